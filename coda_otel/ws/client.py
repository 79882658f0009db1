"""One debug WebSocket connection's state: its subscriptions, sequence numbers and queue.

    client = DebugClient(queue_size=256, on_drop=count_drop)
    client.put(("pipeline_stage", None, ts, data_json))   # never blocks; drops the oldest
    frames = await client.next_frames()                   # encoded envelopes, [] once closed

Made and fed by :class:`~coda_otel.ws.hub.DebugHub`; only touched on the hub's event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from coda_otel.ws.protocol import EVENT_TYPES, encode_envelope

__all__ = ["DebugClient", "Item"]

# (type, request id, ts, encoded data)
Item = tuple[str, str | int | None, str, str]


class DebugClient:
    """One connection's state: subscriptions, sequence numbers and its bounded queue.

    Only touched on the hub's event loop.
    """

    def __init__(self, queue_size: int, on_drop: Callable[[], None]) -> None:
        self.subscriptions: frozenset[str] = frozenset(EVENT_TYPES)
        self.dropped = 0
        self._items: deque[tuple[int, str, str | int | None, str, str]] = deque()
        self._max = queue_size
        self._on_drop = on_drop
        self._seq = 0
        self._wake = asyncio.Event()
        self._closed = False

    def put(self, item: Item) -> None:
        """Queue one message; its ``seq`` is fixed now, so a dropped message leaves a gap."""
        if self._closed:
            return
        while len(self._items) >= self._max:
            self._items.popleft()
            self.dropped += 1
            self._on_drop()
        self._seq += 1
        self._items.append((self._seq, *item))
        self._wake.set()

    async def next_frames(self) -> list[str]:
        """Wait for queued messages and return them encoded; ``[]`` once the client is closed."""
        while not self._items and not self._closed:
            self._wake.clear()
            await self._wake.wait()
        frames = []
        while self._items:
            seq, mtype, rid, ts, data_json = self._items.popleft()
            frames.append(encode_envelope(mtype, rid, seq, ts, data_json))
        return frames

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._wake.set()
