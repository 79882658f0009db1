"""Short-term memory: the last N turns of the conversation, in order.

st = ShortTermMemory(max_turns=20)
st.add_turn("user", "My name is Ada.")
st.add_turn("assistant", "Nice to meet you, Ada.")
st.turns          # [{'role', 'content', 'timestamp', 'turn_id'}, ...] (a copy)
st.turn_count     # turns ever added (the deque keeps only the last max_turns)
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Mapping
from typing import Any

ROLES = ("user", "assistant", "system")


class ShortTermMemory:
    def __init__(self, max_turns: int = 20) -> None:
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        self.max_turns = max_turns
        self.lock = threading.RLock()
        self._turns: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_turns)
        self._count = 0

    def add_turn(self, role: str, content: str) -> dict[str, Any]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
        with self.lock:
            self._count += 1
            turn = {
                "role": role,
                "content": content,
                "timestamp": time.time(),
                "turn_id": self._count,
            }
            self._turns.append(turn)
            return dict(turn)

    @property
    def turns(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(t) for t in self._turns]

    @property
    def size(self) -> int:
        """Turns held now (no lock: ``len`` of a deque is atomic)."""
        return len(self._turns)

    @property
    def turn_count(self) -> int:
        with self.lock:
            return self._count

    def clear(self) -> None:
        with self.lock:
            self._turns.clear()
            self._count = 0

    def export(self) -> dict[str, Any]:
        with self.lock:
            return {"turns": self.turns, "turn_count": self._count, "max_turns": self.max_turns}

    def import_data(self, data: Mapping[str, Any]) -> None:
        turns = data.get("turns", [])
        if not isinstance(turns, list):
            raise ValueError("short_term.turns must be a list")
        clean = []
        for i, t in enumerate(turns):
            if not isinstance(t, Mapping) or t.get("role") not in ROLES:
                raise ValueError(f"short_term.turns[{i}] needs a role in {ROLES} and content")
            clean.append(
                {
                    "role": t["role"],
                    "content": str(t.get("content", "")),
                    "timestamp": float(t.get("timestamp", time.time())),
                    "turn_id": int(t.get("turn_id", i + 1)),
                }
            )
        with self.lock:
            self._turns.clear()
            self._turns.extend(clean)
            self._count = max(int(data.get("turn_count", len(clean))), len(clean))
