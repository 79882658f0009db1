"""Redaction of snapshot documents, each distinct text once across consecutive snapshots.

from coda_otel.snapshots.redaction import SnapshotRedactor

redactor = SnapshotRedactor(Sanitizer())   # redaction on, previews only: the defaults
redactor.redact(doc)                       # a build_document() result, in place
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from coda_otel.sanitize import Sanitizer
from coda_otel.snapshots.pacing import Pacer

#: Items redacted between two calls of the pacer (which pauses when it is time to): a text
#: redacted afresh takes tens of microseconds.
PACE_EVERY = 8


class SnapshotRedactor:
    """Redacts the texts of one snapshot after another, each distinct text once.

        redactor = SnapshotRedactor(sanitizer)
        redactor.redact(doc)     # every turn's and memory's "content", in place

    Memories rarely change between two snapshots, so the texts cleaned for the previous
    snapshot are reused (a dict lookup instead of the redaction patterns); memory stays bounded
    by one snapshot's texts. A change of the sanitizer's switches (capture on, redaction off)
    starts afresh. Used by one writer thread, which pauses now and then
    (:class:`~coda_otel.snapshots.pacing.Pacer`), so a turn running meanwhile waits a
    millisecond or so for the GIL, not the whole redaction.
    """

    def __init__(self, sanitizer: Sanitizer) -> None:
        self.sanitizer = sanitizer
        self._previous: dict[str, str] = {}
        self._switches: tuple[object, ...] = ()

    @property
    def policy(self) -> tuple[object, ...]:
        """The sanitizer's switches that decide a cleaned text (a change starts afresh)."""
        s = self.sanitizer
        return (s.capture_content, s.redact, s.max_length, s.preview_length)

    def redact(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with every turn's and memory's ``content`` redacted (a preview unless
        capture is on); items whose text changes are copied, never the source's dicts."""
        self.redact_lists(doc["short_term"]["turns"], doc["long_term"]["memories"])
        return doc

    def redact_lists(self, *lists: list[Any], pace: Callable[[], None] | None = None) -> None:
        """Each item's ``content`` in these lists redacted, in place: one snapshot's items
        (the texts kept for the next snapshot are the ones seen here). ``pace`` is called
        every ``PACE_EVERY`` items (default: a new :class:`Pacer`)."""
        pace = pace if pace is not None else Pacer()
        s = self.sanitizer
        switches = self.policy
        previous = self._previous if switches == self._switches else {}
        current: dict[str, str] = {}
        limit = None if s.capture_content else s.preview_length
        clean = s.text
        for items in lists:
            for i, item in enumerate(items):
                # exact dicts first: an isinstance check against the Mapping ABC costs more
                ok = type(item) is dict or isinstance(item, Mapping)
                text = item.get("content") if ok else None
                if type(text) is str:
                    cleaned = current.get(text)
                    if cleaned is None:
                        cleaned = previous.get(text)
                        if cleaned is None:
                            cleaned = clean(text, limit)
                        current[text] = cleaned
                    if cleaned is not text and cleaned != text:  # copy only what changed:
                        items[i] = {**item, "content": cleaned}  # fewer objects for the GC
                if i % PACE_EVERY == PACE_EVERY - 1:
                    pace()
        self._previous, self._switches = current, switches
