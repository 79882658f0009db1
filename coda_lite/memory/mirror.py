"""A decoded in-memory copy of every memory row, so reading all memories costs no SQL.

    mirror = MemoryMirror()
    mirror.sorted_rows(db, owner="ada")   # built from SQLite on the first read
    mirror.upsert(row)                    # a write keeps it current ...
    mirror.drop()                         # ... or drops it (rebuilt by the next read)

Rows are tuples ``(id, content, importance, topics, created_at, source, owner)``, ordered by
``(created_at, id)`` like the store's SQL. The owner of the mirror (the long-term store) calls
it under its own lock.
"""

from __future__ import annotations

import bisect
import json
import sqlite3

from coda_lite.memory.sqlite_db import COLS

Mirrored = tuple[str, str, float, tuple[str, ...], float, str, str]


def _order(m: Mirrored) -> tuple[float, str]:
    return m[4], m[0]  # created_at, id


class MemoryMirror:
    """Every owner's decoded rows, and the same rows in (created_at, id) order."""

    def __init__(self) -> None:
        self._rows: dict[str, Mirrored] | None = None
        self._ordered: list[Mirrored] | None = None

    def drop(self) -> None:
        self._rows = self._ordered = None

    def upsert(self, row: Mirrored) -> None:
        """Put one written row in (nothing to do before the first read built the mirror)."""
        if self._rows is None:
            return
        replaced = self._rows.get(row[0])
        self._rows[row[0]] = row
        if replaced is not None:
            self._ordered = None
        elif self._ordered is not None:
            bisect.insort(self._ordered, row, key=_order)

    def sorted_rows(self, db: sqlite3.Connection, owner: str | None) -> list[Mirrored]:
        """``owner``'s rows (``None``: all) by (created_at, id), a new list; reads SQLite only
        when empty."""
        if self._rows is None:
            rows = db.execute(f"SELECT {COLS}, owner FROM memories")
            self._rows = {
                r[0]: (r[0], r[1], float(r[2]), tuple(json.loads(r[3])), float(r[4]), r[5], r[6])
                for r in rows
            }
            self._ordered = None
        if self._ordered is None:
            self._ordered = sorted(self._rows.values(), key=_order)
        if owner is None:
            return list(self._ordered)  # a copy: later writes insert into the ordered list
        return [m for m in self._ordered if m[6] == owner]
