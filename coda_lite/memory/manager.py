"""The memory manager: short-term turns plus long-term facts, behind one async interface.

    manager = MemoryManager(ShortTermMemory(20), LongTermMemory(db_path, embedder), embedder)
    await manager.add_interaction("My name is Ada and I live in Lisbon.", "Noted.", owner="ada")
    await manager.get_context("Where do I live?", owner="ada")
    # [{'id': '…', 'content': 'I live in Lisbon.', 'score': 0.52, 'topics': ['location']}]
    await manager.get_context("Where do I live?", owner="bob")     # [] : Ada's facts are hers
    manager.read_memory_state("ada")  # consistent copy, the shape of coda_otel's MemoryStateSource
    manager.add_operation_listener(lambda op, *, owner: print(op, owner))   # retrieve ada

Memory is scoped by owner: every operation reads and writes one owner's short-term turns and
long-term facts only (``owner`` defaults to :data:`DEFAULT_OWNER`). The ``short_term`` given
is the template for each owner's own short-term memory (same ``max_turns``); at most
``max_owners`` owners keep short-term turns in this process (least recently used go first).

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

from cachetools import LRUCache

from coda_lite.memory.extract import Fact, extract_facts
from coda_lite.memory.jsonfile import MemoryStoreError, read_json, write_json_atomic
from coda_lite.memory.long_term import DEFAULT_OWNER, LongTermMemory
from coda_lite.memory.short_term import ShortTermMemory
from coda_lite.pipeline.stages import Embedder

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
        min_score: float = 0.25,
        max_owners: int = 10_000,
    ) -> None:
        self.short_term = short_term  # the default owner's, and the template for the others
        self.long_term = long_term
        self.embedder = embedder
        self.k = k
        self.min_score = min_score
        self.lock = threading.RLock()
        self._short: LRUCache[str, ShortTermMemory] = LRUCache(maxsize=max_owners)
        self._short[DEFAULT_OWNER] = short_term
        self._listeners: list[Callable[..., None]] = []

    def short_term_of(self, owner: str) -> ShortTermMemory:
        """``owner``'s short-term memory (created empty on first use)."""
        with self.lock:
            st = self._short.get(owner)
            if st is None:
                st = self._short[owner] = ShortTermMemory(self.short_term.max_turns)
            return st

    @property
    def short_term_turns(self) -> int:
        """Short-term turns held for every owner (a size for the gauge; takes no lock)."""
        for _ in range(5):
            try:
                memories = list(self._short.values())
            except RuntimeError:  # resized while copied: try again
                continue
            return sum(st.size for st in memories)
        raise RuntimeError("owners kept changing while counted")

    # -- listeners --------------------------------------------------------------------------
    def add_operation_listener(self, cb: Callable[..., None]) -> None:
        """``cb(op, owner=owner)`` after every operation (op in :data:`OPERATIONS`); errors logged.

        Listeners run on the caller's thread (the event loop, for async operations), so they
        must be quick: count, decide, hand slow work to a thread (as the snapshot emitter does).
        """
        self._listeners.append(cb)

    def _notify(self, op: str, owner: str) -> None:
        for cb in list(self._listeners):
            try:
                cb(op, owner=owner)
            except Exception:
                log.exception("memory operation listener %r failed on %r", cb, op)

    # -- operations -------------------------------------------------------------------------
    async def get_context(self, query: str, *, owner: str = DEFAULT_OWNER) -> list[dict[str, Any]]:
        """``owner``'s memories most relevant to ``query``: [{id, content, score, topics}]."""
        if not query.strip():
            return []
        vec = (await asyncio.to_thread(self.embedder.encode, [query]))[0]

        def find() -> list[dict[str, Any]]:
            return self.long_term.retrieve(vec, self.k, self.min_score, owner=owner)

        found = await asyncio.to_thread(find)
        self._notify("retrieve", owner)
        return [
            {"id": m["id"], "content": m["content"], "score": m["score"], "topics": m["topics"]}
            for m in found
        ]

    async def add_memory(
        self,
        content: str,
        *,
        importance: float = 0.5,
        topics: Sequence[str] = (),
        owner: str = DEFAULT_OWNER,
    ) -> dict[str, Any]:
        vec = (await asyncio.to_thread(self.embedder.encode, [content]))[0]

        def write() -> dict[str, Any]:
            with self.lock:
                return self.long_term.add(
                    content, importance=importance, topics=topics, embedding=vec, owner=owner
                )

        memory = await asyncio.to_thread(write)
        self._notify("add", owner)
        return memory

    async def add_interaction(
        self, user: str, assistant: str, *, owner: str = DEFAULT_OWNER
    ) -> list[dict[str, Any]]:
        """Record ``owner``'s turn and keep the facts worth remembering; the new memories."""
        lt = self.long_term

        def prepare() -> tuple[list[Fact], Any]:  # SQLite lookups and the model: off the loop
            facts = [f for f in extract_facts(user) if lt.find(f.content, owner=owner) is None]
            return facts, self.embedder.encode([f.content for f in facts]) if facts else None

        facts, vecs = await asyncio.to_thread(prepare)

        def write(facts: list[Fact]) -> list[dict[str, Any]]:
            with self.lock:
                short_term = self.short_term_of(owner)
                short_term.add_turn("user", user)
                short_term.add_turn("assistant", assistant)
            # Long-term writes may wait for the database: outside the manager's lock, so
            # snapshots and the size gauge never wait behind them.
            added = []
            for i, fact in enumerate(facts):
                if lt.find(fact.content, owner=owner) is not None:
                    continue
                added.append(
                    lt.add(
                        fact.content,
                        importance=fact.importance,
                        topics=fact.topics,
                        embedding=None if vecs is None else vecs[i],
                        owner=owner,
                    )
                )
            return added

        added = await asyncio.to_thread(write, facts)
        self._notify("add_interaction", owner)
        return added

    async def clear(self, *, owner: str = DEFAULT_OWNER) -> None:
        """Forget ``owner``'s turns and memories (nobody else's)."""

        def wipe() -> None:
            with self.lock:
                self.short_term_of(owner).clear()
            self.long_term.clear(owner)  # may wait for the database: not under our lock

        await asyncio.to_thread(wipe)
        self._notify("clear", owner)

    async def export(self, path: str | os.PathLike[str], *, owner: str = DEFAULT_OWNER) -> Path:
        """``owner``'s memories to one JSON file (written atomically, readable by its owner)."""
        p = Path(path)

        def dump() -> None:
            with self.lock:
                data = {
                    "version": 1,
                    "short_term": self.short_term_of(owner).export(),
                    "long_term": {"memories": self.long_term.get_all_memories(owner=owner)},
                }
            write_json_atomic(p, data)

        await asyncio.to_thread(dump)
        self._notify("export", owner)
        return p

    async def import_(self, path: str | os.PathLike[str], *, owner: str = DEFAULT_OWNER) -> int:
        """Load a file written by :meth:`export` into ``owner``; the number of long-term ones."""
        p = Path(path)

        def load() -> int:
            data = read_json(p)
            if not isinstance(data, dict):
                raise MemoryStoreError(f"memory import file {p} must hold an object")
            memories = data.get("long_term", {}).get("memories", [])
            with self.lock:
                if "short_term" in data:
                    self.short_term_of(owner).import_data(data["short_term"])
            return self.long_term.import_data(memories, where=str(p), owner=owner)

        n = await asyncio.to_thread(load)
        self._notify("import", owner)
        return n

    # -- state ------------------------------------------------------------------------------
    def read_memory_state(self, owner: str | None = None) -> dict[str, Any]:
        """A consistent copy of ``owner``'s memories (coda_otel MemoryStateSource shape)."""
        owner = DEFAULT_OWNER if owner is None else owner
        short_term = self.short_term_of(owner)
        with self.lock, short_term.lock:
            short = {"turns": short_term.turns, "turn_count": short_term.turn_count}
        # The long-term copy is consistent under the store's own lock; built outside ours, a
        # snapshot of many memories never keeps a turn's short-term write waiting.
        return {
            "owner": owner,
            "short_term": short,
            "long_term": self.long_term.read_state(owner=owner),
        }
