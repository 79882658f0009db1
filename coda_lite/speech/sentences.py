"""Cut streamed text into sentences as soon as each one is complete, for speech.

    splitter = SentenceSplitter()
    splitter.feed("Paris is the capital")      # []
    splitter.feed(". It is big")               # ['Paris is the capital.']
    splitter.flush()                           # 'It is big'  (what remains at the end)

    quick = SentenceSplitter(first_phrase_words=4)
    quick.feed("To make tea, boil some water, then")   # ['To make tea, boil some water,']

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quotes or brackets) once
whitespace follows, or at a line break; the end is only known when the next piece arrives,
so "3.5" or "e.g." inside a piece never cut it. With ``first_phrase_words``, the first piece
of an answer may end sooner, at a clause break (``,``, ``;``, ``:`` or a dash) once it holds
that many words: the voice starts after a phrase instead of a whole first sentence, which a
small model writes at ~10 tokens/s, and the rest follows sentence by sentence (whole
sentences sound more natural than fragments, and by then speech is ahead of the model).
"""

from __future__ import annotations

import re

_END = re.compile(r"""[.!?…]+["')\]]*\s+|\n+""")
_CLAUSE = re.compile(r"""[,;:]["')\]]*\s+|\s[-\u2013\u2014]+\s+""")  # or a dash


class SentenceSplitter:
    """Accumulates text pieces; :meth:`feed` returns the sentences they completed."""

    def __init__(self, min_chars: int = 4, *, first_phrase_words: int = 0) -> None:
        if first_phrase_words < 0:
            raise ValueError(f"first_phrase_words must be >= 0, got {first_phrase_words}")
        self._buffer = ""
        self.min_chars = min_chars  # shorter "sentences" ("1.") wait for the next one
        self.first_phrase_words = first_phrase_words  # 0: whole sentences from the start
        self._cut = False  # a piece was handed out already

    def feed(self, piece: str) -> list[str]:
        self._buffer += piece
        out: list[str] = []
        start = self._first_phrase(out)
        for match in _END.finditer(self._buffer):
            sentence = self._buffer[start : match.end()].strip()
            if len(sentence) >= self.min_chars:
                out.append(sentence)
                start = match.end()
        self._buffer = self._buffer[start:]
        self._cut = self._cut or bool(out)
        return out

    def _first_phrase(self, out: list[str]) -> int:
        """Where the sentence search starts: after the first phrase, when it is cut here."""
        if self._cut or not self.first_phrase_words:
            return 0
        sentence_end = _END.search(self._buffer)
        for match in _CLAUSE.finditer(self._buffer):
            if sentence_end is not None and sentence_end.start() < match.start():
                return 0  # a whole sentence comes first: it is the first piece
            phrase = self._buffer[: match.end()].strip()
            if len(phrase.split()) >= self.first_phrase_words:
                out.append(phrase)
                return match.end()
        return 0

    def flush(self) -> str | None:
        """The text after the last complete sentence (None when there is none)."""
        rest, self._buffer = self._buffer.strip(), ""
        return rest or None
