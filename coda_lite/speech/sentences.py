"""Cut streamed text into sentences as soon as each one is complete, for speech.

    splitter = SentenceSplitter()
    splitter.feed("Paris is the capital")      # []
    splitter.feed(". It is big")               # ['Paris is the capital.']
    splitter.flush()                           # 'It is big'  (what remains at the end)

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with any closing quotes or brackets) once
whitespace follows, or at a line break; the end is only known when the next piece arrives,
so "3.5" or "e.g." inside a piece never cut it.
"""

from __future__ import annotations

import re

_END = re.compile(r"""[.!?…]+["')\]]*\s+|\n+""")


class SentenceSplitter:
    """Accumulates text pieces; :meth:`feed` returns the sentences they completed."""

    def __init__(self, min_chars: int = 4) -> None:
        self._buffer = ""
        self.min_chars = min_chars  # shorter "sentences" ("1.") wait for the next one

    def feed(self, piece: str) -> list[str]:
        self._buffer += piece
        out: list[str] = []
        start = 0
        for match in _END.finditer(self._buffer):
            sentence = self._buffer[start : match.end()].strip()
            if len(sentence) >= self.min_chars:
                out.append(sentence)
                start = match.end()
        self._buffer = self._buffer[start:]
        return out

    def flush(self) -> str | None:
        """The text after the last complete sentence (None when there is none)."""
        rest, self._buffer = self._buffer.strip(), ""
        return rest or None
