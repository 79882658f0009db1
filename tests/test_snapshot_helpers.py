"""A small MemoryStateSource for the snapshot tests: plain data guarded by its own lock."""

from __future__ import annotations

import threading
from typing import Any


class LockedMemory:
    """Short-term turns and long-term memories; every method holds the lock for its whole edit.

    ``add_interaction`` adds a turn and a memory that points at it in one step, so a consistent
    copy never holds a memory whose ``turn_id`` is missing from the turns.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.turns: list[dict[str, Any]] = []
        self.memories: dict[str, dict[str, Any]] = {}
        self._seq = 0

    def add_turn(self, role: str, content: str) -> str:
        with self.lock:
            return self._add_turn(role, content)

    def _add_turn(self, role: str, content: str) -> str:
        self._seq += 1
        turn_id = f"t{self._seq}"
        self.turns.append(
            {"role": role, "content": content, "timestamp": f"ts-{self._seq}", "turn_id": turn_id}
        )
        return turn_id

    def add_memory(self, mid: str, content: str, importance: float, topics: list[str]) -> None:
        with self.lock:
            self.memories[mid] = {
                "id": mid, "content": content, "importance": importance, "topics": list(topics),
            }  # fmt: skip

    def add_interaction(self, mid: str, user: str, topics: list[str]) -> None:
        with self.lock:
            turn_id = self._add_turn("user", user)
            self.memories[mid] = {"id": mid, "content": user, "importance": 0.5,
                                  "topics": list(topics), "turn_id": turn_id}  # fmt: skip

    def update_memory(self, mid: str, **fields: Any) -> None:
        with self.lock:
            self.memories[mid].update(fields)

    def remove_memory(self, mid: str) -> None:
        with self.lock:
            self.memories.pop(mid, None)

    def clear(self) -> None:
        with self.lock:
            self.turns.clear()
            self.memories.clear()

    def read_memory_state(self) -> dict[str, Any]:
        with self.lock:
            memories = [dict(m, topics=list(m["topics"])) for m in self.memories.values()]
            turns = [dict(t) for t in self.turns]
        topics = sorted({t for m in memories for t in m["topics"]})
        return {
            "short_term": {"turns": turns, "turn_count": len(turns)},
            "long_term": {"memories": memories, "memory_count": len(memories), "topics": topics},
        }
