"""A snapshot's memories as JSON texts, each unchanged memory's text reused from the last one.

    from coda_otel.snapshots.encoded import EncodedMemories

    encoded = EncodedMemories(SnapshotRedactor(sanitizer))
    encoded.prepare(doc)     # a build_document() result: turns redacted, memories -> JSONTexts
    atomic_write_json(path, doc, indent=None)   # the memories' texts are written as they are

Memories rarely change between two snapshots, yet each snapshot used to redact and encode
every one of them again (~2.3 MB of JSON at 10k memories) on the writer thread, holding the
GIL while a turn wanted it. Here a memory the previous snapshot held unchanged gets that
snapshot's text, found one of two ways:

* **The same object.** A :class:`~coda_otel.protocols.MemoryStateSource` may hand out the very
  object it handed out before for a memory that has not changed, and never changes an object
  it handed out (a changed memory is a new object). Such a memory's text is reused with no
  look at its fields: where the objects stand in the same places as last time (the usual
  case), one identity check per memory over slices of the list (``map(operator.is_, ...)``,
  in C; ~1 ms at 10k memories); elsewhere (one added or removed before them), a lookup by
  ``id()``. The entries kept from the previous snapshot hold their objects, so an id is
  never recycled for another object while its text is kept.
* **An equal copy.** A memory that is a new object (from a source that copies on every read,
  or a changed one) is compared with the previous snapshot's memory of the same id and
  content: reused when all fields are equal and of the same types (``1`` never stands in for
  ``1.0`` or ``True``).

Changed memories are redacted (with the turns, in one pass of the
:class:`~coda_otel.snapshots.redaction.SnapshotRedactor`) and encoded. The file is the one a
fresh encoding writes, byte for byte (one corner of equal copies: ``0.0`` and ``-0.0`` compare
equal, so a zero that only flips its sign keeps its old text). Snapshots of different owners
(the document's ``owner``) interleave, so each of the last ``owners`` owners keeps its own:
memory stays bounded by one snapshot's texts per owner kept. A change of the redaction policy
starts afresh. Used by one writer thread, which pauses between pieces of its work
(:class:`~coda_otel.snapshots.pacing.Pacer`) so that a turn running meanwhile gets the GIL.
"""

from __future__ import annotations

import itertools
import operator
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coda_otel.files import JSONTexts, json_text
from coda_otel.snapshots.pacing import Pacer
from coda_otel.snapshots.redaction import SnapshotRedactor

#: A memory's (id, content).
_Key = tuple[Any, Any]
#: A memory as read (kept alive: its id() is the lookup key), its (id, content) when it is a
#: dict with hashable ones (else None), its fields' types, and its JSON text.
_Entry = tuple[Any, _Key | None, tuple[type, ...], str]

#: Memories looked up per C-level pass (tens of microseconds each).
SLICE = 512

_ITEM = operator.itemgetter(0)
_ENTRY_KEY = operator.itemgetter(1)
_TYPES = operator.itemgetter(2)
_TEXT = operator.itemgetter(3)
_KEY = operator.itemgetter("id", "content")
#: The entry of a memory not seen before: its object is private, so nothing read is it.
_MISS: _Entry = (object(), None, (), "")


@dataclass(slots=True, frozen=True)
class _Kept:
    """One owner's last snapshot: the policy its texts were redacted under, and per memory,
    in the order read, the memory itself, its entry and its text (never changed once kept)."""

    policy: tuple[object, ...]
    items: list[Any]
    entries: list[_Entry]
    texts: list[str]


class EncodedMemories:
    """Prepares snapshot documents for the writer, reusing each unchanged memory's JSON."""

    def __init__(self, redactor: SnapshotRedactor, *, owners: int = 4) -> None:
        self.redactor = redactor
        self.owners = owners
        #: per owner (the document's ``owner``), most recent last
        self._kept: OrderedDict[Any, _Kept] = OrderedDict()
        #: memories of the last prepare() whose text was reused (the rest were encoded)
        self.reused = 0
        #: of those, the ones found as the same object as before (no comparison needed)
        self.same_objects = 0

    def prepare(
        self, doc: dict[str, Any], pace: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """``doc`` redacted in place, its ``long_term.memories`` replaced by their JSON texts
        (a :class:`~coda_otel.files.JSONTexts`, for compact ``atomic_write_json``).
        ``pace`` is called between pieces of the work (default: a new :class:`Pacer`)."""
        pace = pace if pace is not None else Pacer()
        policy = self.redactor.policy
        owner = doc.get("owner")  # snapshots of several owners interleave: one cache each
        kept = self._kept.pop(owner, None)
        if kept is None or kept.policy != policy:
            kept = _Kept(policy, [], [], [])
        old_items, old_entries, old_texts = kept.items, kept.entries, kept.texts
        memories: list[Any] = doc["long_term"]["memories"]
        if _same_objects(memories, old_items, pace):  # nothing changed: nothing to copy
            self._kept[owner] = kept
            self.reused = self.same_objects = len(memories)
            self.redactor.redact_lists(doc["short_term"]["turns"], pace=pace)
            doc["long_term"]["memories"] = JSONTexts(old_texts)
            return doc
        by_id: dict[int, _Entry] | None = None  # the old entries by id(): built when needed
        entries: list[_Entry] = []
        texts: list[str] = []
        missed: list[int] = []  # indexes of memories that are not an object seen last time
        for start in range(0, len(memories), SLICE):
            chunk = memories[start : start + SLICE]
            olds = old_items[start : start + SLICE]
            if len(olds) == len(chunk) and all(map(operator.is_, chunk, olds)):
                entries += old_entries[start : start + SLICE]  # the same objects in the same
                texts += old_texts[start : start + SLICE]  # places: the usual case
            else:  # moved (one added or removed before them), new, or copies
                if by_id is None:
                    by_id = dict(zip(map(id, old_items), old_entries, strict=True))
                found = list(map(by_id.get, map(id, chunk), itertools.repeat(_MISS)))
                same = list(map(operator.is_, map(_ITEM, found), chunk))
                if not all(same):
                    missed += itertools.compress(itertools.count(start), map(operator.not_, same))
                entries += found  # a missed memory's entry and text are put in below
                texts += map(_TEXT, found)
            pace()
        self.same_objects = len(memories) - len(missed)
        changed = self._compare(memories, missed, old_entries, entries, texts, pace)
        redacted = [item for _, item, _, _ in changed]
        self.redactor.redact_lists(doc["short_term"]["turns"], redacted, pace=pace)
        for (i, item, key, types), clean in zip(changed, redacted, strict=True):
            text = texts[i] = json_text(clean)  # redaction copied what it changed
            entries[i] = (item, key, types, text)
            pace()
        self._kept[owner] = _Kept(policy, list(memories), entries, texts)
        while len(self._kept) > self.owners:
            self._kept.popitem(last=False)  # the owner not snapshotted for longest
        self.reused = len(memories) - len(changed)
        doc["long_term"]["memories"] = JSONTexts(texts)
        return doc

    @staticmethod
    def _compare(
        memories: list[Any],
        missed: list[int],
        old_entries: list[_Entry],
        entries: list[_Entry],
        texts: list[str],
        pace: Callable[[], None],
    ) -> list[tuple[int, Any, _Key | None, tuple[type, ...]]]:
        """The missed memories equal to one of the previous snapshot get its text (and an entry
        of their own); the others are returned: (index, as read, key, fields' types)."""
        if not missed:
            return []
        by_key = dict(zip(map(_ENTRY_KEY, old_entries), old_entries, strict=True))
        changed = []
        for start in range(0, len(missed), SLICE):
            indexes = missed[start : start + SLICE]
            items = [memories[i] for i in indexes]
            try:
                found = _equal_copies(items, by_key)
            except (AttributeError, KeyError, TypeError):  # not plain memories: one by one
                found = [_one(item, by_key) for item in items]
            for i, item, (key, types, entry) in zip(indexes, items, found, strict=True):
                if entry is None:
                    changed.append((i, item, key, types))
                else:
                    text = texts[i] = entry[3]
                    entries[i] = (item, key, types, text)
            pace()
        return changed


def _same_objects(memories: list[Any], items: list[Any], pace: Callable[[], None]) -> bool:
    """Whether ``memories`` are the objects ``items`` are, in the same places (one identity
    check per memory, in C, a slice at a time)."""
    if len(memories) != len(items) or not memories:
        return False
    for start in range(0, len(memories), SLICE):
        end = start + SLICE
        if not all(map(operator.is_, memories[start:end], items[start:end])):
            return False
        pace()
    return True


_Found = tuple[_Key | None, tuple[type, ...], _Entry | None]


def _equal_copies(items: list[Any], by_key: dict[_Key | None, _Entry]) -> list[_Found]:
    """For each memory of ``items`` (all dicts with an id and content): its key, its fields'
    types, and the previous entry of that key when its fields are equal and of the same types
    (else None). The per-memory work runs in C (``map`` over the items): for a source that
    copies its memories on every read, this is most of a snapshot's work on the writer's
    thread, and every microsecond of it is GIL a turn waits for."""
    if any(type(item) is not dict for item in items):
        raise TypeError("not every memory is a dict")
    keys = list(map(_KEY, items))
    olds = list(map(by_key.get, keys, itertools.repeat(_MISS)))
    types = list(map(tuple, map(map, itertools.repeat(type), map(dict.values, items))))
    same_fields = map(operator.eq, map(_ITEM, olds), items)
    same_types = map(operator.eq, map(_TYPES, olds), types)
    return [
        (key, kinds, old if fields and kinds_same and old is not _MISS else None)
        for key, kinds, old, fields, kinds_same in zip(
            keys, types, olds, same_fields, same_types, strict=True
        )
    ]


def _one(item: Any, by_key: dict[_Key | None, _Entry]) -> _Found:
    """The same for one memory of any shape (a non-dict, no id, an unhashable key)."""
    if type(item) is not dict:
        return None, (), None
    key: _Key | None = (item.get("id"), item.get("content"))
    types = tuple(map(type, item.values()))  # 1 never stands in for 1.0 or True
    try:
        entry = by_key.get(key)
    except TypeError:  # an unhashable id or content: encoded every time it is a new object
        return None, types, None
    if entry is not None and entry[2] == types and entry[0] == item:
        return key, types, entry
    return key, types, None
