"""Reading long-term memory: retrieval by cosine and listings (a part of :class:`LongTermMemory`).

    store.retrieve("What is my name?", k=3, owner="ada")   # best first, with "score"
    store.get_all_memories(owner="ada")                     # oldest first, from the mirror
    store.read_state(owner="ada")                           # one consistent copy, for snapshots

Every read names its owner and runs under the store's lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from cachetools import LRUCache

from coda_lite.memory.jsonfile import MemoryStoreError
from coda_lite.memory.mirror import MemoryMirror, Mirrored
from coda_lite.memory.sqlite_db import COLS as _COLS
from coda_lite.memory.sqlite_db import DEFAULT_OWNER
from coda_lite.stats import CallStats


def _row(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0],
        "content": r[1],
        "importance": float(r[2]),
        "topics": json.loads(r[3]),
        "created_at": float(r[4]),
        "source": r[5],
    }


class MemoryReads:
    """``retrieve``, ``get_all_memories``, ``find``, topics and ``read_state`` over the store."""

    if TYPE_CHECKING:  # what the store provides
        lock: threading.RLock
        stats: CallStats
        embedder: Any
        max_per_owner: int
        evictions: dict[str, int]
        _index: LRUCache[str, tuple[list[str], np.ndarray]]
        _mirror: MemoryMirror

        def _db(self) -> sqlite3.Connection: ...

        def _embed(self, texts: Sequence[str]) -> np.ndarray | None: ...

        def _check_external_writes(self) -> None: ...

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
                    out.append({**_row(r), "score": round(float(scores[i]), 4)})
            return out

    def _sorted_rows(self, owner: str | None) -> list[Mirrored]:
        """``owner``'s memories (``None``: all), decoded, by (created_at, id), from the mirror."""
        self._check_external_writes()
        return self._mirror.sorted_rows(self._db(), owner)

    def get_all_memories(
        self, include_embeddings: bool = False, *, owner: str | None = DEFAULT_OWNER
    ) -> list[dict[str, Any]]:
        """``owner``'s memories (``None``: every owner's, for the operator), oldest first."""
        with self.lock:
            if not include_embeddings:
                return [
                    {"id": i, "content": c, "importance": imp, "topics": list(t),
                     "created_at": at, "source": src}
                    for i, c, imp, t, at, src, _ in self._sorted_rows(owner)
                ]  # fmt: skip
            where, args = ("", ()) if owner is None else ("WHERE owner = ?", (owner,))
            rows = self._db().execute(
                f"SELECT {_COLS}, embedding FROM memories {where} ORDER BY created_at, id", args
            )
            out = []
            for r in rows:
                m = _row(r)
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
            return None if r is None else _row(r)

    def get_all_topics(self, *, owner: str | None = DEFAULT_OWNER) -> list[str]:
        with self.lock:
            return sorted({t for m in self._sorted_rows(owner) for t in m[3]})

    def read_state(self, *, owner: str = DEFAULT_OWNER) -> dict[str, Any]:
        """``owner``'s memories, count, topics and evictions as one consistent copy."""
        with self.lock:
            memories = self.get_all_memories(owner=owner)
            topics = sorted({t for m in memories for t in m["topics"]})
            return {
                "memories": memories,
                "memory_count": len(memories),
                "topics": topics,
                "max_memories": self.max_per_owner,
                "evicted_count": self.evictions.get(owner, 0),
            }
