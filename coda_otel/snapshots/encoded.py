"""A snapshot's memories as JSON texts, each unchanged memory's text reused from the last one.

    from coda_otel.snapshots.encoded import EncodedMemories

    encoded = EncodedMemories(SnapshotRedactor(sanitizer))
    encoded.prepare(doc)     # a build_document() result: turns redacted, memories -> JSONTexts
    atomic_write_json(path, doc, indent=None)   # the memories' texts are written as they are

Memories rarely change between two snapshots, yet each snapshot used to redact and encode
every one of them again (~2.3 MB of JSON at 10k memories) on the writer thread, holding the
GIL while a turn wanted it. Here a memory the previous snapshot held unchanged (the same id
and content, equal fields of the same types) gets that snapshot's text: one lookup and one
comparison instead of redaction plus encoding. Changed memories are redacted (with the
turns, in one pass of the :class:`~coda_otel.snapshots.redaction.SnapshotRedactor`) and
encoded. The file is the one a fresh encoding writes, byte for byte (one corner: ``0.0`` and
``-0.0`` compare equal, so a zero that only flips its sign keeps its old text). Snapshots of
different owners (the document's ``owner``) interleave, so each of the last ``owners`` owners
keeps its own: memory stays bounded by one snapshot's texts per owner kept. A change of the
redaction policy starts afresh. Used by one writer thread.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from coda_otel.files import JSONTexts, json_text
from coda_otel.snapshots.redaction import PAUSE_S, REDACT_SLICE, SnapshotRedactor

#: A memory's (id, content), and its entry: as read, its fields' types, its JSON text.
_Key = tuple[Any, Any]
_Entry = tuple[dict[str, Any], tuple[type, ...], str]


class EncodedMemories:
    """Prepares snapshot documents for the writer, reusing each unchanged memory's JSON."""

    def __init__(self, redactor: SnapshotRedactor, *, owners: int = 4) -> None:
        self.redactor = redactor
        self.owners = owners
        #: per owner (the document's ``owner``), most recent last: the policy and the entries
        self._kept: OrderedDict[Any, tuple[tuple[object, ...], dict[_Key, _Entry]]] = OrderedDict()
        #: memories of the last prepare() whose text was reused (the rest were encoded)
        self.reused = 0

    def prepare(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` redacted in place, its ``long_term.memories`` replaced by their JSON texts
        (a :class:`~coda_otel.files.JSONTexts`, for compact ``atomic_write_json``)."""
        policy = self.redactor.policy
        owner = doc.get("owner")  # snapshots of several owners interleave: one cache each
        kept = self._kept.pop(owner, None)
        previous = kept[1] if kept is not None and kept[0] == policy else {}
        current: dict[_Key, _Entry] = {}
        memories: list[Any] = doc["long_term"]["memories"]
        texts: list[str] = []
        changed: list[tuple[int, Any, tuple[type, ...], _Key | None]] = []  # index, as read, ...
        reuse = previous.get
        for start in range(0, len(memories), REDACT_SLICE):
            if start:
                time.sleep(PAUSE_S)  # let a turn run between slices
            for item in memories[start : start + REDACT_SLICE]:
                key: _Key | None = None
                types: tuple[type, ...] = ()
                if type(item) is dict:
                    key = (item.get("id"), item.get("content"))
                    types = tuple(map(type, item.values()))  # 1 never stands in for 1.0 or True
                    try:
                        entry = reuse(key)
                    except TypeError:  # an unhashable id or content: encoded every time
                        key = entry = None
                    if (
                        key is not None
                        and entry is not None
                        and entry[1] == types
                        and entry[0] == item
                    ):
                        current[key] = entry
                        texts.append(entry[2])
                        continue
                changed.append((len(texts), item, types, key))
                texts.append("")
        redacted = [item for _, item, _, _ in changed]
        self.redactor.redact_lists(doc["short_term"]["turns"], redacted)  # copies what it changes
        for (i, item, types, key), clean in zip(changed, redacted, strict=True):
            text = texts[i] = json_text(clean)
            if key is not None:
                current[key] = (item, types, text)
        self._kept[owner] = (policy, current)
        while len(self._kept) > self.owners:
            self._kept.popitem(last=False)  # the owner not snapshotted for longest
        self.reused = len(memories) - len(changed)
        doc["long_term"]["memories"] = JSONTexts(texts)
        return doc
