"""Export and import of one owner's long-term memories (a part of :class:`LongTermMemory`).

store.export("ada.json", owner="ada")          # {"version": 1, "memories": [...]}
store.import_("ada.json", owner="carol")       # copies: ids another owner uses are renewed
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coda_lite.memory.jsonfile import MemoryStoreError, read_json, write_json_atomic
from coda_lite.memory.sqlite_db import DEFAULT_OWNER


class MemoryTransfer:
    """``export`` / ``import_`` / ``import_data`` over a store's reads and ``add``."""

    if TYPE_CHECKING:  # what the store provides

        def get_all_memories(
            self, include_embeddings: bool = False, *, owner: str | None = DEFAULT_OWNER
        ) -> list[dict[str, Any]]: ...

        def _embed(self, texts: Sequence[str]) -> np.ndarray | None: ...

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
        ) -> dict[str, Any]: ...

    def export(self, path: str | os.PathLike[str], *, owner: str = DEFAULT_OWNER) -> int:
        """Write ``owner``'s memories (no embeddings) to a JSON file atomically; the count."""
        memories = self.get_all_memories(owner=owner)
        write_json_atomic(Path(path), {"version": 1, "memories": memories})
        return len(memories)

    def import_(self, path: str | os.PathLike[str], *, owner: str = DEFAULT_OWNER) -> int:
        """Add an exported file's memories to ``owner`` (embeddings recomputed); the count."""
        p = Path(path)
        data = read_json(p)
        memories = data.get("memories") if isinstance(data, Mapping) else data
        if not isinstance(memories, list):
            raise MemoryStoreError(f"memory import file {p} holds no 'memories' list")
        return self.import_data(memories, where=str(p), owner=owner)

    def import_data(
        self, memories: Sequence[Any], where: str = "import", *, owner: str = DEFAULT_OWNER
    ) -> int:
        items = []
        for i, m in enumerate(memories):
            if not isinstance(m, Mapping) or not str(m.get("content", "")).strip():
                raise MemoryStoreError(f"{where}: memories[{i}] needs a non-empty 'content'")
            items.append(m)
        vecs = self._embed([str(m["content"]) for m in items]) if items else None
        for i, m in enumerate(items):
            self.add(
                str(m["content"]),
                importance=min(1.0, max(0.0, float(m.get("importance", 0.5)))),
                topics=[str(t) for t in m.get("topics", [])],
                embedding=None if vecs is None else vecs[i],
                source=str(m.get("source", "import")),
                memory_id=str(m["id"]) if m.get("id") else None,
                created_at=float(m["created_at"]) if m.get("created_at") else None,
                owner=owner,
            )
        return len(items)
