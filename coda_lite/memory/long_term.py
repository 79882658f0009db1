"""Long-term memory: a persistent SQLite store of memories with embeddings, retrieved by cosine.

    store = LongTermMemory(home / "data" / "memory.sqlite3", embedder, max_per_owner=200)
    store.add("My name is Ada.", importance=0.9, topics=["name"], owner="ada")
    store.retrieve("What is my name?", k=3, owner="ada")  # [{'id', 'content', 'score', ...}]
    store.retrieve("What is my name?", k=3, owner="bob")  # []: every call names its owner
    store.get_all_memories(owner="ada")       # no embeddings unless include_embeddings=True
    store.export("ada.json", owner="ada"); store.import_("ada.json", owner="carol")

Methods are synchronous and thread-safe (one lock; call them with ``asyncio.to_thread`` from
async code). The store is a health Component (name ``"memory_store"``): ``restart`` closes and
reopens the database file. Writes that find the file locked by another connection wait with
the lock released (:mod:`coda_lite.memory.sqlite_db`), so reads never queue behind them.

SQLite is the source of truth. Reading every memory (``get_all_memories``, ``read_state``, the
snapshot path) is served from a decoded in-memory mirror built by the first such read and kept
up to date by ``add``/``clear``/``import`` (and evictions) under the same lock, so it costs no
SQL and no ``json.loads`` per row. A commit by another connection (``PRAGMA data_version``)
drops the mirror and the cached embedding matrix, so the next read sees it.

The mirror holds each memory as a dict built once, when its row enters the mirror.
``read_state`` (the snapshot path) hands out those very dicts, read-only, as coda_otel's
``MemoryStateSource`` allows: a memory unchanged since the last snapshot is the same object,
so the snapshot reuses its JSON text without comparing fields, and a read costs no dict per
memory. They are never changed: a write puts in a new dict. ``get_all_memories`` and the
other public reads return copies the caller may change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from cachetools import LRUCache

from coda_lite.memory.jsonfile import MemoryStoreError
from coda_lite.memory.mirror import MemoryMirror
from coda_lite.memory.sqlite_db import (
    COLS,
    evict_beyond,
    memory_from_row,
    open_database,
    write_retrying,
)
from coda_lite.memory.sqlite_db import DEFAULT_OWNER as DEFAULT_OWNER
from coda_lite.memory.transfer import export_memories, import_data, import_file
from coda_lite.pipeline.stages import Embedder
from coda_lite.stats import CallStats

_COLS = COLS
#: Embedding matrices kept for this many owners (the most recently retrieved from).
INDEX_OWNERS = 256
#: At most this many long-term memories per owner; the least important, oldest go first.
DEFAULT_MAX_PER_OWNER = 200


_T = TypeVar("_T")


class LongTermMemory:
    """Memories belong to one owner each; every read and write names the owner it acts for.

    ``max_per_owner`` caps each owner's memories: an add beyond it evicts that owner's least
    important, then oldest, memory; ``evictions`` counts them and ``on_evict(owner, n)`` hears.
    ``on_write(outcome)`` hears every write end: ``None`` when it went through, else the
    exception it raised (a full disk: ``sqlite3.OperationalError: disk I/O error``).
    """

    name = "memory_store"

    def __init__(
        self,
        path: str | os.PathLike[str],
        embedder: Embedder | None = None,
        *,
        max_per_owner: int = DEFAULT_MAX_PER_OWNER,
        on_evict: Callable[[str, int], None] | None = None,
        on_write: Callable[[BaseException | None], None] | None = None,
        busy_timeout: float = 10.0,
    ) -> None:
        if max_per_owner < 1:
            raise ValueError(f"max_per_owner must be at least 1, got {max_per_owner}")
        self.path = Path(path)
        self.embedder = embedder
        self.max_per_owner = max_per_owner
        self._on_evict = on_evict
        self._on_write = on_write
        self.evictions: dict[str, int] = {}  # owner -> memories evicted since start
        self.busy_timeout = busy_timeout
        #: Memories of every owner, kept without SQL (a scrape reads it, never waiting on a lock)
        self.approx_count = 0
        self.lock = threading.RLock()
        self.stats = CallStats()
        self._conn: sqlite3.Connection | None = None
        # owner -> embedding matrix, for the owners retrieved from most recently (bounded)
        self._index: LRUCache[str, tuple[list[str], np.ndarray]] = LRUCache(INDEX_OWNERS)
        self._mirror = MemoryMirror()  # decoded rows, built on the first read of all
        self._data_version: int | None = None
        self.reopen()

    # -- connection -------------------------------------------------------------------------
    def reopen(self) -> None:
        with self.lock:
            self.close()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn, self.approx_count = open_database(self.path)
            self._conn = conn

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._drop_caches()

    def _drop_caches(self) -> None:
        self._index.clear()
        self._mirror.drop()
        self._data_version = None

    def _check_external_writes(self) -> None:
        """Drop the caches if another connection committed since they were built."""
        db = self._db()
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            self._drop_caches()
            self._data_version = version
            self.approx_count = int(db.execute("SELECT count(*) FROM memories").fetchone()[0])

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise MemoryStoreError(f"memory database {self.path} is closed")
        return self._conn

    # -- writes -----------------------------------------------------------------------------
    def _embed(self, texts: Sequence[str]) -> np.ndarray | None:
        return None if self.embedder is None else self.embedder.encode(list(texts))

    def add(
        self,
        content: str,
        *,
        importance: float = 0.5,
        topics: Iterable[str] = (),
        embedding: np.ndarray | None = None,
        source: str = "user",
        memory_id: str | None = None,
        created_at: float | None = None,
        owner: str = DEFAULT_OWNER,
    ) -> dict[str, Any]:
        """Store one memory of ``owner`` (embedding computed with the embedder when not given).

        A ``memory_id`` that another owner already uses gets a fresh id instead: an import
        never replaces someone else's memory.
        """
        content = content.strip()
        if not content:
            raise ValueError("memory content is empty")
        if not 0.0 <= importance <= 1.0:
            raise ValueError(f"importance must be within 0..1, got {importance}")
        if embedding is None:
            vecs = self._embed([content])
            embedding = None if vecs is None else vecs[0]
        sorted_topics = sorted({str(t) for t in topics})
        created = created_at if created_at is not None else time.time()
        memory = {
            "id": memory_id or uuid.uuid4().hex,
            "content": content,
            "importance": float(importance),
            "topics": sorted_topics,
            "created_at": created,
            "source": source,
        }
        blob = None if embedding is None else np.asarray(embedding, np.float32).tobytes()
        dim = None if embedding is None else int(np.asarray(embedding).size)
        model = self.embedder.model_name if self.embedder is not None else None

        def insert(db: sqlite3.Connection) -> int:
            taken = db.execute("SELECT owner FROM memories WHERE id = ?", (memory["id"],))
            row_owner = taken.fetchone()
            if row_owner is not None and row_owner[0] != owner:
                memory["id"] = uuid.uuid4().hex
                row_owner = None
            with db:
                db.execute(
                    "INSERT OR REPLACE INTO memories VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        memory["id"],
                        content,
                        memory["importance"],
                        json.dumps(memory["topics"]),
                        memory["created_at"],
                        source,
                        blob,
                        dim,
                        model,
                        owner,
                    ),
                )
                evicted = evict_beyond(db, owner, self.max_per_owner)
            self.approx_count += (row_owner is None) - len(evicted)
            self._index.pop(owner, None)
            # a new dict for the mirror: the one returned is the caller's to change
            self._mirror.upsert(
                owner,
                {**memory, "id": str(memory["id"]), "topics": list(sorted_topics),
                 "created_at": float(created)},  # as SQLite gives them back
            )  # fmt: skip
            self._mirror.remove(evicted)  # after the upsert: the new memory may be one of them
            return len(evicted)

        with self.stats.track(content, kind="write"):
            evicted = self._write(insert)
        if evicted:
            self.evictions[owner] = self.evictions.get(owner, 0) + evicted
            if self._on_evict is not None:
                self._on_evict(owner, evicted)
        return memory

    def clear(self, owner: str | None = DEFAULT_OWNER) -> int:
        """Delete ``owner``'s memories (``None``: every owner's); returns how many."""

        def delete(db: sqlite3.Connection) -> int:
            with db:
                if owner is None:
                    n = int(db.execute("DELETE FROM memories").rowcount)
                else:
                    n = int(db.execute("DELETE FROM memories WHERE owner = ?", (owner,)).rowcount)
            self.approx_count -= n
            self._index.clear()
            self._mirror.remove_owner(owner)  # the other owners' memories stay the same objects
            return n

        with self.stats.track(kind="write"):
            return self._write(delete)

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(db)`` under the lock, waiting for another connection's lock unlocked; the
        ``on_write`` hook hears how it ended (after the lock is released)."""
        try:
            done = write_retrying(
                self.lock, self._db, work, busy_timeout=self.busy_timeout, where=self.path
            )
        except Exception as exc:
            self._tell_write(exc)
            raise
        self._tell_write(None)
        return done

    def _tell_write(self, outcome: BaseException | None) -> None:
        if self._on_write is None:
            return
        with contextlib.suppress(Exception):  # whoever listens must not fail a write
            self._on_write(outcome)

    @property
    def memory_count(self) -> int:
        """Memories of every owner (the size of the store)."""
        with self.lock:
            return int(self._db().execute("SELECT count(*) FROM memories").fetchone()[0])

    @property
    def metadata(self) -> dict[str, Any]:
        with self.lock:
            return {
                "memory_count": self.memory_count if self._conn is not None else 0,
                "path": str(self.path),
                "model": self.embedder.model_name if self.embedder is not None else None,
            }

    # -- reads ------------------------------------------------------------------------------
    def _matrix(self, owner: str) -> tuple[list[str], np.ndarray]:
        found = self._index.get(owner)
        if found is None:
            dim = self.embedder.dim if self.embedder is not None else None
            rows = self._db().execute(
                "SELECT id, embedding FROM memories "
                "WHERE owner = ? AND embedding IS NOT NULL AND dim = ?",
                (owner, dim),
            )
            ids, vecs = [], []
            for mid, blob in rows:
                ids.append(mid)
                vecs.append(np.frombuffer(blob, np.float32))
            matrix = np.vstack(vecs) if vecs else np.zeros((0, dim or 0), np.float32)
            found = self._index[owner] = (ids, matrix)
        return found

    def retrieve(
        self,
        query: str | np.ndarray,
        k: int = 3,
        min_score: float = -1.0,
        *,
        owner: str = DEFAULT_OWNER,
    ) -> list[dict[str, Any]]:
        """``owner``'s ``k`` memories most similar to ``query`` (text or embedding), best first."""
        if k < 1:
            return []
        if isinstance(query, str):
            vecs = self._embed([query])
            if vecs is None:
                raise MemoryStoreError("retrieve by text needs an embedder")
            query = vecs[0]
        q = np.asarray(query, np.float32).reshape(-1)
        with self.lock, self.stats.track():
            self._check_external_writes()
            ids, matrix = self._matrix(owner)
            if not ids or matrix.shape[1] != q.size:
                return []
            scores = matrix @ (q / (np.linalg.norm(q) or 1.0))
            order = [i for i in np.argsort(-scores)[:k] if scores[i] >= min_score]
            out = []
            for i in order:
                r = (
                    self._db()
                    .execute(
                        f"SELECT {_COLS} FROM memories WHERE id = ? AND owner = ?",
                        (ids[i], owner),
                    )
                    .fetchone()
                )
                if r is not None:
                    out.append({**memory_from_row(r), "score": round(float(scores[i]), 4)})
            return out

    def _shared_memories(self, owner: str | None) -> list[dict[str, Any]]:
        """``owner``'s memories (``None``: all) by (created_at, id), from the mirror: a new
        list (the caller may keep it after the lock is released) of the mirror's read-only
        dicts."""
        self._check_external_writes()
        return self._mirror.memories(self._db(), owner)

    def get_all_memories(
        self, include_embeddings: bool = False, *, owner: str | None = DEFAULT_OWNER
    ) -> list[dict[str, Any]]:
        """``owner``'s memories (``None``: every owner's, for the operator), oldest first."""
        if not include_embeddings:
            with self.lock:
                shared = self._shared_memories(owner)
            # copies (the mirror's dicts are shared by snapshots), made outside the lock
            return [{**m, "topics": list(m["topics"])} for m in shared]
        where, args = ("", ()) if owner is None else ("WHERE owner = ?", (owner,))
        with self.lock:
            rows_with_blobs = self._db().execute(
                f"SELECT {_COLS}, embedding FROM memories {where} ORDER BY created_at, id", args
            )
            out = []
            for r in rows_with_blobs:
                m = memory_from_row(r)
                m["embedding"] = None if r[6] is None else np.frombuffer(r[6], np.float32).tolist()
                out.append(m)
            return out

    def find(self, content: str, *, owner: str = DEFAULT_OWNER) -> dict[str, Any] | None:
        """``owner``'s memory whose content equals ``content`` (case-insensitive), if any."""
        with self.lock:
            r = (
                self._db()
                .execute(
                    f"SELECT {_COLS} FROM memories WHERE owner = ? AND lower(content) = lower(?)",
                    (owner, content.strip()),
                )
                .fetchone()
            )
            return None if r is None else memory_from_row(r)

    def get_all_topics(self, *, owner: str | None = DEFAULT_OWNER) -> list[str]:
        with self.lock:
            self._check_external_writes()
            return self._mirror.topics(self._db(), owner)

    def read_state(self, *, owner: str = DEFAULT_OWNER) -> dict[str, Any]:
        """``owner``'s memories, count, topics and evictions as one consistent copy.

        The list is new, but its memories are the mirror's own dicts, read-only: the same
        object for a memory unchanged since an earlier read, a new one once it changed (the
        contract of coda_otel's ``MemoryStateSource``). Under the lock, the reading is a copy of
        one list and of the counted topics: a snapshot of many memories keeps a turn's
        retrieval waiting for no more than that."""
        with self.lock:
            memories = self._shared_memories(owner)
            topics = self._mirror.topics(self._db(), owner)  # kept counted: no pass over all
            evicted = self.evictions.get(owner, 0)
        return {
            "memories": memories,
            "memory_count": len(memories),
            "topics": topics,
            "max_memories": self.max_per_owner,
            "evicted_count": evicted,
        }

    # -- export / import ----------------------------------------------------------------------
    def export(self, path: str | os.PathLike[str], *, owner: str = DEFAULT_OWNER) -> int:
        """Write ``owner``'s memories (no embeddings) to a JSON file atomically; the count."""
        return export_memories(self, Path(path), owner=owner)

    def import_(self, path: str | os.PathLike[str], *, owner: str = DEFAULT_OWNER) -> int:
        """Add an exported file's memories to ``owner`` (embeddings recomputed); the count."""
        return import_file(self, Path(path), owner=owner)

    def import_data(
        self, memories: Sequence[Any], where: str = "import", *, owner: str = DEFAULT_OWNER
    ) -> int:
        """Add ``memories`` (dicts with ``content``) to ``owner``; the count."""
        return import_data(self, memories, where, owner=owner)

    # -- health Component -------------------------------------------------------------------
    async def get_heartbeat(self) -> dict[str, Any]:
        def probe() -> tuple[bool, int]:
            with self.lock:
                if self._conn is None:
                    return False, 0
                return True, self.memory_count

        try:
            ok, count = await asyncio.to_thread(probe)
        except sqlite3.Error:
            ok, count = False, 0
        return self.stats.heartbeat(
            healthy=ok and self.stats.error_rate < 0.5,
            models_loaded=ok,
            memory_count=count,
            path=str(self.path),
        )

    async def restart(self) -> None:
        await asyncio.to_thread(self.reopen)
        self.stats.reset_window()

    async def force_restart(self) -> None:
        await asyncio.to_thread(self.close)
        await self.restart()
