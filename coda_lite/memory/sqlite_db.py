"""The long-term memory's SQLite file: schema, opening, and writes that never wait under a lock.

    conn, count = open_database(path)          # WAL, the schema (owners added to an old file)
    result = write_retrying(lock, get_db, work, busy_timeout=10.0, where=path)
    evicted = evict_beyond(conn, "ada", cap=200)   # ids deleted, in a write's transaction

SQLite's own busy wait is switched off (``busy_timeout = 0``): a write that finds another
connection holding the write lock fails at once and :func:`write_retrying` waits *outside*
the caller's lock, so reads (and the scrape, and snapshots) go on meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from coda_lite.memory.jsonfile import MemoryStoreError, private_file

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    id TEXT PRIMARY KEY, content TEXT NOT NULL, importance REAL NOT NULL,
    topics TEXT NOT NULL, created_at REAL NOT NULL, source TEXT NOT NULL,
    embedding BLOB, dim INTEGER, model TEXT, owner TEXT NOT NULL DEFAULT 'default');
"""
# A database from before memories had owners gains the column; its rows belong to "default".
_ADD_OWNER = "ALTER TABLE memories ADD COLUMN owner TEXT NOT NULL DEFAULT 'default'"
_OWNER_INDEX = "CREATE INDEX IF NOT EXISTS memories_owner ON memories (owner, created_at)"
COLS = "id, content, importance, topics, created_at, source"


def memory_from_row(r: Sequence[Any]) -> dict[str, Any]:
    """The memory a row selected with :data:`COLS` (first) holds, decoded."""
    return {
        "id": r[0],
        "content": r[1],
        "importance": float(r[2]),
        "topics": json.loads(r[3]),
        "created_at": float(r[4]),
        "source": r[5],
    }


#: The owner of memories stored without one (and of a turn with neither user nor session id).
DEFAULT_OWNER = "default"


def open_database(path: Path) -> tuple[sqlite3.Connection, int]:
    """The connection (file created 0600) and the number of memories in it."""
    try:
        private_file(path)
        conn = sqlite3.connect(path, check_same_thread=False, timeout=10)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(memories)")}
        if "owner" not in columns:
            with conn:
                conn.execute(_ADD_OWNER)
        conn.execute(_OWNER_INDEX)
        count = int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])
        conn.execute("PRAGMA busy_timeout = 0")  # waits happen in write_retrying, unlocked
    except sqlite3.Error as exc:
        raise MemoryStoreError(f"cannot open memory database {path}: {exc}") from exc
    return conn, count


def write_retrying(
    lock: threading.RLock,
    get_db: Callable[[], sqlite3.Connection],
    work: Callable[[sqlite3.Connection], T],
    *,
    busy_timeout: float,
    where: object,
) -> T:
    """``work(db)`` under ``lock``; while another connection holds the write lock, wait with
    ``lock`` released, for at most ``busy_timeout`` seconds (then :class:`MemoryStoreError`).
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.005
    while True:
        with lock:
            try:
                return work(get_db())
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        if time.monotonic() >= deadline:
            raise MemoryStoreError(
                f"memory database {where} is locked by another connection "
                f"(waited {busy_timeout:g} s)"
            )
        time.sleep(pause)
        pause = min(0.1, pause * 2)


def evict_beyond(db: sqlite3.Connection, owner: str, cap: int) -> list[str]:
    """Delete ``owner``'s memories beyond ``cap``: least important first, then oldest; their ids."""
    (count,) = db.execute("SELECT count(*) FROM memories WHERE owner = ?", (owner,)).fetchone()
    excess = int(count) - cap
    if excess <= 0:
        return []
    ids = [
        str(r[0])
        for r in db.execute(
            "SELECT id FROM memories WHERE owner = ? ORDER BY importance, created_at, id LIMIT ?",
            (owner, excess),
        )
    ]
    db.executemany("DELETE FROM memories WHERE id = ?", [(i,) for i in ids])
    return ids
