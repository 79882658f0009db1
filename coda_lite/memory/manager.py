"""The memory manager: short-term turns plus long-term facts, behind one async interface.

    manager = MemoryManager(ShortTermMemory(20), LongTermMemory(db_path, embedder), embedder)
    await manager.add_interaction("My name is Ada and I live in Lisbon.", "Noted.")
    await manager.get_context("Where do I live?")
    # [{'id': '…', 'content': 'I live in Lisbon.', 'score': 0.52, 'topics': ['location']}]
    manager.read_memory_state()      # consistent copy, the shape of coda_otel's MemoryStateSource
    manager.add_operation_listener(lambda op: print(op))   # 'retrieve', 'add_interaction', ...

Embedding and SQLite work runs in worker threads (``asyncio.to_thread``), never on the loop;
operation listeners run on the loop and must be quick.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from coda_lite.memory.extract import Fact, extract_facts
from coda_lite.memory.jsonfile import MemoryStoreError, read_json, write_json_atomic
from coda_lite.memory.long_term import Embedder, LongTermMemory
from coda_lite.memory.short_term import ShortTermMemory

log = logging.getLogger(__name__)

OPERATIONS = ("add", "retrieve", "add_interaction", "clear", "import", "export")


class MemoryManager:
    def __init__(
        self,
        short_term: ShortTermMemory,
        long_term: LongTermMemory,
        embedder: Embedder,
        *,
        k: int = 3,
        min_score: float = 0.3,
    ) -> None:
        self.short_term = short_term
        self.long_term = long_term
        self.embedder = embedder
        self.k = k
        self.min_score = min_score
        self.lock = threading.RLock()
        self._listeners: list[Callable[[str], None]] = []

    # -- listeners --------------------------------------------------------------------------
    def add_operation_listener(self, cb: Callable[[str], None]) -> None:
        """``cb(op)`` after every operation (op in :data:`OPERATIONS`); errors are logged.

        Listeners run on the caller's thread (the event loop, for async operations), so they
        must be quick: count, decide, hand slow work to a thread (as the snapshot emitter does).
        """
        self._listeners.append(cb)

    def _notify(self, op: str) -> None:
        for cb in list(self._listeners):
            try:
                cb(op)
            except Exception:
                log.exception("memory operation listener %r failed on %r", cb, op)

    # -- operations -------------------------------------------------------------------------
    async def get_context(self, query: str) -> list[dict[str, Any]]:
        """The memories most relevant to ``query``: [{id, content, score, topics}], best first."""
        if not query.strip():
            return []
        vec = (await asyncio.to_thread(self.embedder.encode, [query]))[0]
        found = await asyncio.to_thread(self.long_term.retrieve, vec, self.k, self.min_score)
        self._notify("retrieve")
        return [
            {"id": m["id"], "content": m["content"], "score": m["score"], "topics": m["topics"]}
            for m in found
        ]

    async def add_memory(
        self, content: str, *, importance: float = 0.5, topics: Sequence[str] = ()
    ) -> dict[str, Any]:
        vec = (await asyncio.to_thread(self.embedder.encode, [content]))[0]

        def write() -> dict[str, Any]:
            with self.lock:
                return self.long_term.add(
                    content, importance=importance, topics=topics, embedding=vec
                )

        memory = await asyncio.to_thread(write)
        self._notify("add")
        return memory

    async def add_interaction(self, user: str, assistant: str) -> list[dict[str, Any]]:
        """Record the turn and keep the facts worth remembering; returns the new memories."""

        def prepare() -> tuple[list[Fact], Any]:  # SQLite lookups and the model: off the loop
            facts = [f for f in extract_facts(user) if self.long_term.find(f.content) is None]
            return facts, self.embedder.encode([f.content for f in facts]) if facts else None

        facts, vecs = await asyncio.to_thread(prepare)

        def write(facts: list[Fact]) -> list[dict[str, Any]]:
            with self.lock:
                self.short_term.add_turn("user", user)
                self.short_term.add_turn("assistant", assistant)
                added = []
                for i, fact in enumerate(facts):
                    if self.long_term.find(fact.content) is not None:
                        continue
                    added.append(
                        self.long_term.add(
                            fact.content,
                            importance=fact.importance,
                            topics=fact.topics,
                            embedding=None if vecs is None else vecs[i],
                        )
                    )
                return added

        added = await asyncio.to_thread(write, facts)
        self._notify("add_interaction")
        return added

    async def clear(self) -> None:
        def wipe() -> None:
            with self.lock:
                self.short_term.clear()
                self.long_term.clear()

        await asyncio.to_thread(wipe)
        self._notify("clear")

    async def export(self, path: str | os.PathLike[str]) -> Path:
        """Both memories to one JSON file (written atomically)."""
        p = Path(path)

        def dump() -> None:
            with self.lock:
                data = {
                    "version": 1,
                    "short_term": self.short_term.export(),
                    "long_term": {"memories": self.long_term.get_all_memories()},
                }
            write_json_atomic(p, data)

        await asyncio.to_thread(dump)
        self._notify("export")
        return p

    async def import_(self, path: str | os.PathLike[str]) -> int:
        """Load a file written by :meth:`export`; returns the number of long-term memories."""
        p = Path(path)

        def load() -> int:
            data = read_json(p)
            if not isinstance(data, dict):
                raise MemoryStoreError(f"memory import file {p} must hold an object")
            memories = data.get("long_term", {}).get("memories", [])
            with self.lock:
                if "short_term" in data:
                    self.short_term.import_data(data["short_term"])
                return self.long_term.import_data(memories, where=str(p))

        n = await asyncio.to_thread(load)
        self._notify("import")
        return n

    # -- state ------------------------------------------------------------------------------
    def read_memory_state(self) -> dict[str, Any]:
        """A consistent copy of both memories (coda_otel MemoryStateSource shape)."""
        with self.lock, self.short_term.lock:
            return {
                "short_term": {
                    "turns": self.short_term.turns,
                    "turn_count": self.short_term.turn_count,
                },
                "long_term": self.long_term.read_state(),
            }
