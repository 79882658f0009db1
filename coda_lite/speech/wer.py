"""Word error rate: how far a recognizer's words are from what was said.

    word_error_rate(["My name is Ada."], ["my name is eva"])   # 0.25: one word of four
    errors, words = word_errors("Where do I live?", "where do i")   # (1, 4): one deletion

Words are compared case-insensitively without punctuation (an apostrophe inside a word stays:
"what's" is one word). The rate is (substitutions + deletions + insertions) over the words
said, summed over all utterances, so a long line weighs more than a short one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def words_of(text: str) -> list[str]:
    """The words of ``text`` as a recognizer writes them: lower case, no punctuation."""
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words): the word-level edit distance (Levenshtein) and the length."""
    ref, hyp = words_of(reference), words_of(hypothesis)
    row = list(range(len(hyp) + 1))  # distances from the empty reference prefix
    for i, said in enumerate(ref, 1):
        diagonal, row[0] = row[0], i
        for j, heard in enumerate(hyp, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (said != heard))
    return row[-1], len(ref)


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Edits over reference words across utterance pairs (0.0 is perfect; may exceed 1.0)."""
    if len(references) != len(hypotheses):
        raise ValueError(
            f"{len(references)} reference(s) but {len(hypotheses)} hypothesis(es): pair them"
        )
    errors = total = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        e, n = word_errors(reference, hypothesis)
        errors, total = errors + e, total + n
    if total == 0:
        raise ValueError("the references hold no words")
    return errors / total
