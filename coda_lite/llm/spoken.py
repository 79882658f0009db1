"""Shape a model's answer for the ear: plain sentences, at most a few, within a word budget.

    shaper = SpokenAnswer(max_sentences=2, max_words=40)
    shaper.feed("**Paris** is the capital")   # 'Paris is'      (the last word may still grow)
    shaper.feed(". It is big. It has")        # ' the capital. It is big.'  and shaper.done
    shaper.finish()                           # ''  (nothing left: the cap was reached)
    spoken_text("1. Tea\\n2. Coffee")         # 'Tea. Coffee.'

The prompt asks for one or two sentences without lists or markdown; this is the last resort
when the model writes them anyway. Markdown emphasis and code marks, headings, quote marks
and list markers are removed, each line becomes a sentence, and a line in which the model
starts to speak for the user (``User:``) ends the answer. The answer ends at its
``max_sentences``-th sentence (a sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by
whitespace, as :class:`~coda_lite.speech.sentences.SentenceSplitter` cuts them for speech) or
at its ``max_words``-th word, whichever comes first; ``done`` turns true then, so a backend
stops generating (or reading its stream). Text is handed on one whole word at a time: a
marker split across pieces (``*`` then ``*``) is never spoken.
"""

from __future__ import annotations

import re

_LINE_MARK = re.compile(r"^(?:#{1,6}\s+|>\s*|[-*+•]\s+|\(?\d{1,2}[.)]\s+|[a-z][.)]\s+)")
_ROLE = re.compile(r"^(?:coda|assistant)\s*:\s*", re.I)
_OTHER_SPEAKER = re.compile(r"^(?:user|human|you)\s*:", re.I)
_INLINE = re.compile(r"\*\*|__|`+|~~|(?<![\w*])[*_](?=\w)|(?<=[\w.!?,])[*_](?![\w*])")
_SENTENCE_END = re.compile(r"""[.!?…]+["')\]]*(?=\s)""")
_CLOSED = re.compile(r"""[.!?…]["')\]]*$""")


def _clean_words(text: str) -> str:
    """One line's words without markdown (emphasis, code marks), whitespace collapsed."""
    return " ".join(_INLINE.sub("", text).split())


class SpokenAnswer:
    """Accumulates streamed text; :meth:`feed` returns the speakable text it completed."""

    def __init__(self, max_sentences: int = 2, max_words: int = 40) -> None:
        if max_sentences < 1 or max_words < 1:
            raise ValueError("max_sentences and max_words must be at least 1")
        self.max_sentences = max_sentences
        self.max_words = max_words
        self.done = False  # the cap is reached (or another speaker began): stop generating
        self._raw = ""  # the model's text not yet turned into speech (the current line)
        self._lines: list[str] = []  # finished lines, cleaned
        self._sent = ""  # the spoken text handed out so far

    @property
    def text(self) -> str:
        """The spoken answer so far."""
        return self._sent.strip()

    def feed(self, piece: str) -> str:
        """Take the next piece of the model's text; the new spoken text (may be '')."""
        if self.done:
            return ""
        self._raw += piece
        *complete, self._raw = self._raw.split("\n")
        for line in complete:
            if not self._end_line(line):
                return self._emit(self._joined(""))
        cut = max(self._raw.rfind(" "), self._raw.rfind("\t"))
        partial = self._line_text(self._raw[: cut + 1]) if cut > 0 else ""
        if partial is None:  # the model began to write the user's turn
            self.done = True
            partial = ""
        return self._emit(self._joined(partial))

    def finish(self) -> str:
        """The model stopped: the rest of the answer (a dangling comma or colon made a stop)."""
        if not self.done:
            self._end_line(self._raw, close=False)
        self._raw = ""
        self.done = True
        return self._emit(self._joined(""))

    def _line_text(self, line: str) -> str | None:
        """A line's speakable words; None when the model began to write the user's turn."""
        line = line.lstrip()  # a trailing space shows that "2." is a list marker
        if _OTHER_SPEAKER.match(line):
            return None
        line = _ROLE.sub("", line)
        while (stripped := _LINE_MARK.sub("", line)) != line:
            line = stripped
        return _clean_words(line)

    def _end_line(self, line: str, *, close: bool = True) -> bool:
        """File a finished line as a sentence; False when the answer ends here."""
        words = self._line_text(line)
        if words is None:
            self.done = True
            return False
        if words:
            self._lines.append(_closed(words) if close else words)
        return True

    def _joined(self, partial: str) -> str:
        return " ".join(p for p in (*self._lines, partial) if p)

    def _emit(self, text: str) -> str:
        """Hand out what ``text`` adds to what was spoken, within the caps.

        A trailing comma, colon or semicolon is held back until more words follow: at the
        end of the answer it becomes a full stop."""
        capped, reached = self._capped(text)
        if reached:  # the cap ends the answer here: end it as a sentence
            text = _closed(capped)
        elif self.done and text:
            text = text.rstrip(",:; ") + ("." if text.rstrip().endswith((",", ":", ";")) else "")
        else:
            text = text.rstrip(",:;")
        if not text.startswith(self._sent) or len(text) == len(self._sent):
            return ""
        new = text[len(self._sent) :]
        self._sent = text
        return new

    def _capped(self, text: str) -> tuple[str, bool]:
        """``text`` within the caps, and whether a cap was reached (the answer ends there,
        whether its last word arrived in this piece or the cut fell inside it)."""
        reached = False
        for n, match in enumerate(_SENTENCE_END.finditer(text + " "), 1):
            if n >= self.max_sentences:
                reached = self.done = True
                text = text[: match.end()]
                break
        words = text.split(" ")
        if len(words) >= self.max_words:
            reached = self.done = True
            text = " ".join(words[: self.max_words])
        return text, reached


def _closed(text: str) -> str:
    """``text`` ending as a sentence: a trailing ``,``/``:``/``;`` or nothing becomes ``.``."""
    text = text.rstrip(",:; ")
    return text if _CLOSED.search(text) else text + "."


def sentence_count(text: str) -> int:
    """How many sentences ``text`` holds (a last one without its full stop counts too)."""
    text = text.strip()
    ends = len(_SENTENCE_END.findall(text + " "))
    return ends + (1 if text and not _CLOSED.search(text) else 0)


def spoken_text(text: str, max_sentences: int = 2, max_words: int = 40) -> str:
    """The whole answer shaped for speech (what :class:`SpokenAnswer` makes of it streamed)."""
    shaper = SpokenAnswer(max_sentences, max_words)
    shaper.feed(text)
    shaper.finish()
    return shaper.text
