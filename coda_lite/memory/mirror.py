"""A decoded in-memory copy of every memory row, so reading all memories costs no SQL.

    mirror = MemoryMirror()
    mirror.memories(db, owner="ada")      # built from SQLite on the first read
    mirror.topics(db, owner="ada")        # ['drinks', 'location']
    mirror.upsert("ada", {"id": "m1", "content": "I live in Lisbon.", "importance": 0.5,
                          "topics": ["location"], "created_at": 10.0, "source": "user"})
    mirror.remove(["m1"]); mirror.remove_owner("ada")   # writes keep it current ...
    mirror.drop()                         # ... or drop it (rebuilt by the next read)

Each memory is a dict (``id``, ``content``, ``importance``, ``topics``, ``created_at``,
``source``) built once, when its row enters the mirror, and shared by every read after that:
it is never changed (a write puts in a new dict), and nobody it is handed to may change it.
Each owner's memories are kept in ``(created_at, id)`` order like the store's SQL, with a
count of their topics, so reading one owner's memories and topics is a copy of one list,
whatever the other owners hold. The owner of the mirror (the long-term store) calls it under
its own lock.
"""

from __future__ import annotations

import bisect
import operator
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import Any

from coda_lite.memory.sqlite_db import COLS, memory_from_row

Memory = dict[str, Any]

_TOPICS = operator.itemgetter("topics")


def _order(m: Memory) -> tuple[float, str]:
    return m["created_at"], m["id"]


class _Owned:
    """One owner's memories in (created_at, id) order, and how many carry each topic."""

    __slots__ = ("memories", "topics")

    def __init__(self, memories: list[Memory]) -> None:
        self.memories = sorted(memories, key=_order)
        self.topics: Counter[str] = Counter()
        for topics in map(_TOPICS, memories):
            self.topics.update(topics)

    def add(self, memory: Memory) -> None:
        bisect.insort(self.memories, memory, key=_order)
        self.topics.update(memory["topics"])

    def discard(self, memory: Memory) -> None:
        ordered = self.memories
        i = bisect.bisect_left(ordered, _order(memory), key=_order)
        if i < len(ordered) and ordered[i] is memory:
            del ordered[i]
        else:  # not where its order says (a time that is NaN): looked for one by one
            ordered[:] = [m for m in ordered if m is not memory]
        self.topics.subtract(memory["topics"])
        for topic in memory["topics"]:
            if self.topics[topic] <= 0:
                del self.topics[topic]


class MemoryMirror:
    """Every owner's decoded memories: by id, and per owner in (created_at, id) order."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str, Memory]] | None = None  # id -> (owner, memory)
        self._owners: dict[str, _Owned] = {}

    def drop(self) -> None:
        self._rows = None
        self._owners = {}

    def upsert(self, owner: str, memory: Memory) -> None:
        """Put one written memory in, replacing the one of its id (nothing to do before the
        first read built the mirror). ``memory`` is the mirror's from now on: never changed."""
        if self._rows is None:
            return
        replaced = self._rows.get(memory["id"])
        if replaced is not None:
            self._owners[replaced[0]].discard(replaced[1])
        self._rows[memory["id"]] = (owner, memory)
        owned = self._owners.get(owner)
        if owned is None:
            self._owners[owner] = _Owned([memory])
        else:
            owned.add(memory)

    def remove(self, ids: Iterable[str]) -> None:
        """Take the memories of these ids out (deleted from SQLite)."""
        if self._rows is None:
            return
        for memory_id in ids:
            row = self._rows.pop(memory_id, None)
            if row is not None:
                self._owners[row[0]].discard(row[1])

    def remove_owner(self, owner: str | None) -> None:
        """Take ``owner``'s memories out (``None``: every owner's); the others' stay."""
        if self._rows is None:
            return
        if owner is None:
            self._rows, self._owners = {}, {}
        elif self._owners.pop(owner, None) is not None:
            self._rows = {k: row for k, row in self._rows.items() if row[0] != owner}

    def _build(self, db: sqlite3.Connection) -> None:
        if self._rows is not None:
            return
        by_owner: dict[str, list[Memory]] = {}
        rows: dict[str, tuple[str, Memory]] = {}
        for r in db.execute(f"SELECT {COLS}, owner FROM memories"):
            memory = memory_from_row(r)
            rows[r[0]] = (r[6], memory)
            by_owner.setdefault(r[6], []).append(memory)
        self._owners = {owner: _Owned(memories) for owner, memories in by_owner.items()}
        self._rows = rows

    def memories(self, db: sqlite3.Connection, owner: str | None) -> list[Memory]:
        """``owner``'s memories (``None``: all) by (created_at, id), a new list of the shared
        dicts; reads SQLite only when the mirror is empty."""
        self._build(db)
        if owner is not None:
            owned = self._owners.get(owner)
            return list(owned.memories) if owned is not None else []
        every = [m for owned in self._owners.values() for m in owned.memories]
        return sorted(every, key=_order)

    def topics(self, db: sqlite3.Connection, owner: str | None) -> list[str]:
        """The topics of ``owner``'s memories (``None``: all), sorted."""
        self._build(db)
        if owner is not None:
            owned = self._owners.get(owner)
            return sorted(owned.topics) if owned is not None else []
        return sorted(set().union(*(owned.topics for owned in self._owners.values())))
