"""Helpers for testing a pipeline of your own with coda-otel (and for coda-otel's own tests).

    from coda_otel.testing import InMemoryMemory, capture_pipeline_events, eventually

    with capture_pipeline_events(debugger) as events:
        await run_my_turn("hello")
    assert [s.stage for s in events.stages] == ["stt", "llm", "tts"]
    assert events.conversations[0].status == "ok"

    memory = InMemoryMemory()                      # a MemoryStateSource for snapshot tests
    memory.add_interaction("m1", "I live in Lisbon", ["home"])
    await eventually(lambda: snapshot_dir_has_files(), timeout=5)

Every wait here has a deadline: :func:`eventually` (async) and :func:`wait_until` (blocking)
poll a predicate until it returns something truthy and fail with a clear message when it never
does.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web

from coda_otel.events import ConversationEvent, ListenerBase, StageEvent

T = TypeVar("T")

__all__ = [
    "InMemoryMemory",
    "RecordingListener",
    "capture_pipeline_events",
    "eventually",
    "free_port",
    "serving",
    "wait_until",
]


class RecordingListener(ListenerBase):
    """Keeps every stage and conversation event it receives, in order, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stages: list[StageEvent] = []
        self.conversations: list[ConversationEvent] = []

    def on_stage_end(self, event: StageEvent) -> None:
        with self._lock:
            self.stages.append(event)

    def on_conversation_end(self, event: ConversationEvent) -> None:
        with self._lock:
            self.conversations.append(event)

    def stage_names(self) -> list[str]:
        """The stages seen so far, in the order they ended."""
        with self._lock:
            return [event.stage for event in self.stages]

    def clear(self) -> None:
        with self._lock:
            self.stages.clear()
            self.conversations.clear()


class _Listens(Protocol):
    def add_listener(self, listener: Any) -> None: ...

    def remove_listener(self, listener: Any) -> None: ...


@contextmanager
def capture_pipeline_events(debugger: _Listens) -> Iterator[RecordingListener]:
    """Record the events ``debugger`` emits inside the ``with`` block; detach afterwards."""
    recorder = RecordingListener()
    debugger.add_listener(recorder)
    try:
        yield recorder
    finally:
        debugger.remove_listener(recorder)


class InMemoryMemory:
    """A thread-safe :class:`~coda_otel.protocols.MemoryStateSource` holding plain data.

    ``add_interaction`` adds a user turn and a memory pointing at it in one step, so a
    consistent copy never holds a memory whose ``turn_id`` is missing. Reads hand out the
    memories' own dicts (read-only, as the protocol allows): ``update_memory`` replaces a
    memory's dict rather than changing it, so an unchanged memory is the same object.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.turns: list[dict[str, Any]] = []
        self.memories: dict[str, dict[str, Any]] = {}
        self._seq = 0

    def _add_turn(self, role: str, content: str) -> str:
        self._seq += 1
        turn_id = f"t{self._seq}"
        self.turns.append(
            {"role": role, "content": content, "timestamp": f"ts-{self._seq}", "turn_id": turn_id}
        )
        return turn_id

    def add_turn(self, role: str, content: str) -> str:
        with self.lock:
            return self._add_turn(role, content)

    def add_memory(self, mid: str, content: str, importance: float, topics: list[str]) -> None:
        with self.lock:
            self.memories[mid] = {
                "id": mid,
                "content": content,
                "importance": importance,
                "topics": list(topics),
            }

    def add_interaction(self, mid: str, user: str, topics: list[str]) -> None:
        with self.lock:
            turn_id = self._add_turn("user", user)
            self.memories[mid] = {
                "id": mid,
                "content": user,
                "importance": 0.5,
                "topics": list(topics),
                "turn_id": turn_id,
            }

    def update_memory(self, mid: str, **fields: Any) -> None:
        with self.lock:
            self.memories[mid] = {**self.memories[mid], **fields}  # a new object: see above

    def remove_memory(self, mid: str) -> None:
        with self.lock:
            self.memories.pop(mid, None)

    def clear(self) -> None:
        with self.lock:
            self.turns.clear()
            self.memories.clear()

    def read_memory_state(self) -> dict[str, Any]:
        with self.lock:
            memories = list(self.memories.values())  # never changed once handed out
            turns = [dict(t) for t in self.turns]
        topics = sorted({t for m in memories for t in m["topics"]})
        return {
            "short_term": {"turns": turns, "turn_count": len(turns)},
            "long_term": {"memories": memories, "memory_count": len(memories), "topics": topics},
        }


def _timed_out(what: str, timeout: float, last_error: BaseException | None) -> AssertionError:
    cause = f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""
    return AssertionError(f"timed out after {timeout:g} s waiting for {what}{cause}")


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
    what: str = "the condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Await until ``predicate()`` (sync or async) returns something truthy; return it.

    Exceptions listed in ``ignore`` count as "not yet"; after ``timeout`` seconds an
    ``AssertionError`` names ``what`` and the last ignored error.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result  # type: ignore[return-value]
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    *,
    interval: float = 0.05,
    what: str = "the condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """The blocking twin of :func:`eventually`, for code without an event loop."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ignore as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        time.sleep(interval)


def _ephemeral_ports() -> tuple[int, int]:
    """The range the kernel picks client ports from (Linux; else the IANA range)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a test server to bind).

    Chosen below the kernel's range for client ports: a port the kernel picked with
    ``bind(0)`` is one it may hand to the next outgoing connection, and a test that opens
    hundreds of client connections could take it before the server binds it."""
    low, _ = _ephemeral_ports()
    if low > 10000:
        for _ in range(50):
            port = random.randrange(10000, low)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free loopback port for the block; yields its base URL, cleans up after::

    async with serving(app) as base:
        async with session.get(f"{base}/debug/traces") as resp: ...
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
