"""Export and import of one owner's long-term memories, through a store's public surface.

    export_memories(store, Path("ada.json"), owner="ada")   # {"version": 1, "memories": [...]}
    import_file(store, Path("ada.json"), owner="carol")     # copies: ids in use are renewed

``store`` is anything with ``get_all_memories``, ``add`` and an ``embedder`` (or None), such as
:class:`~coda_lite.memory.long_term.LongTermMemory`, whose ``export``/``import_``/``import_data``
call these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from coda_lite.memory.jsonfile import MemoryStoreError, read_json, write_json_atomic
from coda_lite.memory.sqlite_db import DEFAULT_OWNER
from coda_lite.pipeline.stages import Embedder


class TransferStore(Protocol):
    """What export and import use of a store."""

    @property
    def embedder(self) -> Embedder | None: ...

    def get_all_memories(
        self, include_embeddings: bool = False, *, owner: str | None = DEFAULT_OWNER
    ) -> list[dict[str, Any]]: ...

    @property
    def add(self) -> Callable[..., dict[str, Any]]:
        """``add(content, *, importance, topics, embedding, source, memory_id, created_at,
        owner)``: store one memory."""
        ...


def export_memories(store: TransferStore, path: Path, *, owner: str = DEFAULT_OWNER) -> int:
    """Write ``owner``'s memories (no embeddings) to a JSON file atomically; the count."""
    memories = store.get_all_memories(owner=owner)
    write_json_atomic(path, {"version": 1, "memories": memories})
    return len(memories)


def import_file(store: TransferStore, path: Path, *, owner: str = DEFAULT_OWNER) -> int:
    """Add an exported file's memories to ``owner`` (embeddings recomputed); the count."""
    data = read_json(path)
    memories = data.get("memories") if isinstance(data, Mapping) else data
    if not isinstance(memories, list):
        raise MemoryStoreError(f"memory import file {path} holds no 'memories' list")
    return import_data(store, memories, str(path), owner=owner)


def import_data(
    store: TransferStore,
    memories: Sequence[Any],
    where: str = "import",
    *,
    owner: str = DEFAULT_OWNER,
) -> int:
    """Add ``memories`` to ``owner`` with one embedding call for all; the count."""
    items = []
    for i, m in enumerate(memories):
        if not isinstance(m, Mapping) or not str(m.get("content", "")).strip():
            raise MemoryStoreError(f"{where}: memories[{i}] needs a non-empty 'content'")
        items.append(m)
    embedder = store.embedder
    vecs = embedder.encode([str(m["content"]) for m in items]) if items and embedder else None
    for i, m in enumerate(items):
        store.add(
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
