"""Deterministic rules that pick the facts worth keeping out of what the user said.

    extract_facts("My name is Ada and I live in Lisbon.")
    # [Fact('My name is Ada.', 0.9, ('identity', 'name')),
    #  Fact('I live in Lisbon.', 0.8, ('location',))]

Questions are never facts ("Where do I live?" stores nothing). Facts are kept in the user's own
first-person words, which is also what embeds nearest to the user's later questions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    content: str
    importance: float
    topics: tuple[str, ...]


_QUESTION_WORDS = {
    "what", "where", "who", "whom", "whose", "when", "why", "how", "which",
    "do", "does", "did", "is", "are", "am", "can", "could", "would", "will", "should", "shall",
}  # fmt: skip
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
_CLAUSES = re.compile(r",?\s+(?:and|but|also)\s+(?=(?:i|i'm|i am|my)\b)|,\s+(?=(?:i|my)\b)", re.I)
_V = r"(?P<x>[^,.;!?]{1,60})"
_NAME = r"(?P<x>[a-z][a-z' -]{0,40}?)"


def _title(s: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in s.split())


def _plain(s: str) -> str:
    return s


_RULES: list[tuple[re.Pattern[str], str, float, tuple[str, ...], Callable[[str], str]]] = [
    (re.compile(rf"^(?:my name is|call me|i'm called|i am called) {_NAME}$", re.I),
     "My name is {x}.", 0.9, ("identity", "name"), _title),
    (re.compile(rf"^i (?:live|reside) in {_V}$", re.I),
     "I live in {x}.", 0.8, ("location",), _title),
    (re.compile(rf"^i(?:'m| am) from {_V}$", re.I),
     "I am from {x}.", 0.7, ("location", "origin"), _title),
    (re.compile(rf"^i work (?P<prep>as|at|for|in) {_V}$", re.I),
     "I work {prep} {x}.", 0.7, ("work",), _plain),
    (re.compile(rf"^my favou?rite (?P<what>[a-z]+) is {_V}$", re.I),
     "My favourite {what} is {x}.", 0.7, ("preferences",), _plain),
    (re.compile(rf"^my (?P<what>birthday|wife|husband|partner|dog|cat|son|daughter|job)"
                rf"(?P<nm>'s name)? is {_V}$", re.I),
     "My {what}{nm} is {x}.", 0.7, ("personal",), _plain),
    (re.compile(rf"^i (?:really )?(?P<verb>like|love|enjoy|prefer|hate|dislike|don't like) {_V}$",
                re.I),
     "I {verb} {x}.", 0.6, ("preferences",), _plain),
    (re.compile(rf"^i(?:'m| am) (?P<art>an?) {_V}$", re.I),
     "I am {art} {x}.", 0.6, ("identity",), _plain),
    (re.compile(rf"^i have (?P<art>an?|two|three) {_V}$", re.I),
     "I have {art} {x}.", 0.5, ("facts",), _plain),
    (re.compile(r"^(?:please )?remember (?:that )?(?P<x>[^?]{3,200})$", re.I),
     "{x}.", 0.8, ("facts",), _plain),
]  # fmt: skip


def _is_question(sentence: str) -> bool:
    words = sentence.strip().split(maxsplit=1)
    return sentence.rstrip().endswith("?") or (bool(words) and words[0].lower() in _QUESTION_WORDS)


def extract_facts(text: str) -> list[Fact]:
    """The facts in ``text`` (first person, capitalised, de-duplicated, in order)."""
    facts: list[Fact] = []
    seen: set[str] = set()
    for sentence in _SENTENCES.split(text.strip()):
        if not sentence.strip() or _is_question(sentence):
            continue
        for clause in _CLAUSES.split(sentence):
            clause = re.sub(
                r"^(?:hi|hello|hey|well|so|oh|and|also)\b[,!]?\s*", "", clause.strip(), flags=re.I
            )
            clause = clause.strip().rstrip(".!;, ").strip()
            clause = re.sub(r"\s+(?:too|as well)$", "", clause, flags=re.I)
            fact = _match(clause)
            if fact is not None and fact.content.lower() not in seen:
                seen.add(fact.content.lower())
                facts.append(fact)
    return facts


def _match(clause: str) -> Fact | None:
    for pattern, template, importance, topics, fmt in _RULES:
        m = pattern.match(clause)
        if m is None:
            continue
        parts = {k: (v or "") for k, v in m.groupdict().items()}
        parts["x"] = fmt(parts["x"].strip())
        parts = {k: (v.lower() if k in {"verb", "prep", "art", "what", "nm"} else v)
                 for k, v in parts.items()}  # fmt: skip
        content = template.format(**parts)
        content = content[:1].upper() + content[1:]
        extra = (parts["what"],) if parts.get("what") else ()
        return Fact(content, importance, tuple(sorted(set(topics + extra))))
    return None
