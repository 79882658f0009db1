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

import itertools
import operator
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
        for start in range(0, len(memories), REDACT_SLICE):
            if start:
                time.sleep(PAUSE_S)  # let a turn run between slices
            chunk = memories[start : start + REDACT_SLICE]
            try:
                found = _unchanged(chunk, previous)
            except (AttributeError, KeyError, TypeError):  # not plain memories: one by one
                found = [_one(item, previous) for item in chunk]
            for item, (key, types, entry) in zip(chunk, found, strict=True):
                if entry is not None:
                    current[key] = entry  # type: ignore[index]
                    texts.append(entry[2])
                else:
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


_KEY = operator.itemgetter("id", "content")
_Found = tuple[_Key | None, tuple[type, ...], _Entry | None]


def _unchanged(chunk: list[Any], previous: dict[_Key, _Entry]) -> list[_Found]:
    """For each memory of ``chunk`` (all dicts with an id and content): its key, its fields'
    types, and the previous entry when it is unchanged (else None). The per-memory work runs
    in C (``map`` over the chunk): this check is most of a snapshot's work on the writer's
    thread, and every microsecond of it is GIL a turn waits for."""
    if any(type(item) is not dict for item in chunk):
        raise TypeError("not every memory is a dict")
    keys = list(map(_KEY, chunk))
    entries = list(map(previous.get, keys))
    types = list(map(tuple, map(map, itertools.repeat(type), map(dict.values, chunk))))
    olds = [(e[0], e[1]) if e is not None else (None, None) for e in entries]
    same_fields = map(operator.eq, (o[0] for o in olds), chunk)
    same_types = map(operator.eq, (o[1] for o in olds), types)
    return [
        (key, kinds, entry if fields and kinds_same else None)
        for key, kinds, entry, fields, kinds_same in zip(
            keys, types, entries, same_fields, same_types, strict=True
        )
    ]


def _one(item: Any, previous: dict[_Key, _Entry]) -> _Found:
    """The same for one memory of any shape (a non-dict, no id, an unhashable key)."""
    if type(item) is not dict:
        return None, (), None
    key: _Key | None = (item.get("id"), item.get("content"))
    types = tuple(map(type, item.values()))  # 1 never stands in for 1.0 or True
    try:
        entry = previous.get(key)  # type: ignore[arg-type]
    except TypeError:  # an unhashable id or content: encoded every time
        return None, types, None
    if entry is not None and entry[1] == types and entry[0] == item:
        return key, types, entry
    return key, types, None
