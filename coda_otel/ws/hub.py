"""DebugHub: fans pipeline, snapshot, cache and health events out to debug WebSocket clients.

The hub is a :class:`~coda_otel.events.PipelineListener` and a command dispatcher. It never
blocks its caller: publishing from any thread hands the encoded event to the event loop, each
client has a bounded queue, and when a client falls behind its oldest events are dropped and
counted (``coda_debug_ws_events_dropped_total``). Wiring, in the composition root::

    hub = DebugHub(control, metrics=metrics, cache_stats_interval=5.0, health_interval=5.0,
                   allow_fault_injection=config.server.allow_fault_injection)
    debugger.add_listener(hub)                       # pipeline_stage + conversation_end
    snapshots = MemorySnapshotEmitter(..., listeners=[hub.on_memory_snapshot])
    watchdog.add_listener(hub.publish_health_status)  # called with the status on each change
    add_debug_ws_route(app, hub, token=config.server.debug_token)   # coda_otel.ws.server

``control`` is the application's :class:`DebugControl` (commands); without one, only
``subscribe`` works and the other commands answer ``unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from coda_otel.events import ConversationEvent, StageEvent
from coda_otel.metrics import CodaMetrics
from coda_otel.ws.protocol import (
    EVENT_TYPES,
    ClientMessage,
    ProtocolError,
    encode_data_safe,
    encode_envelope,
    epoch_iso,
    now_iso,
)

log = logging.getLogger(__name__)


class DebugControl(Protocol):
    """What the application lets a debug client do. Every method may take its time.

    ``get_cache_stats`` returns ``{"stats": {...}, "recommendations": [...]}`` and
    ``get_health_status`` the watchdog's status (``overall_health``, ``components``, ...).
    ``reset_component`` re-enables a component the watchdog marked failed and returns its
    status (``{"component": name, "status": ..., ...}``).
    ``inject_fault``, ``run_text_turn`` and ``reset_component`` raise ``ValueError`` for bad
    arguments such as an unknown component (the client gets ``invalid_params``);
    ``inject_fault`` raises ``PermissionError`` when disabled.
    """

    async def enable_debugging(self, feature: str, enabled: bool) -> Mapping[str, Any]: ...

    async def take_memory_snapshot(self) -> Mapping[str, Any]: ...

    async def get_cache_stats(self) -> Mapping[str, Any]: ...

    async def get_health_status(self) -> Mapping[str, Any]: ...

    async def run_text_turn(self, text: str, session_id: str | None) -> Mapping[str, Any]: ...

    async def inject_fault(self, component: str, fault: str) -> Mapping[str, Any]: ...

    async def reset_component(self, component: str) -> Mapping[str, Any]: ...


# (type, request id, ts, encoded data)
_Item = tuple[str, str | int | None, str, str]


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

    def put(self, item: _Item) -> None:
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


class DebugHub:
    """Routes events to subscribed clients and commands to the :class:`DebugControl`."""

    def __init__(
        self,
        control: DebugControl | None = None,
        *,
        metrics: CodaMetrics | None = None,
        queue_size: int = 256,
        cache_stats_interval: float | None = 5.0,
        health_interval: float | None = 5.0,
        allow_fault_injection: bool = False,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        for name, value in (
            ("cache_stats_interval", cache_stats_interval),
            ("health_interval", health_interval),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None (off), got {value}")
        self.control = control
        self.allow_fault_injection = allow_fault_injection
        self._metrics = metrics
        self._queue_size = queue_size
        self._intervals = {"cache_stats": cache_stats_interval, "health_status": health_interval}
        # Replaced, never mutated, so other threads may read it without a lock.
        self._clients: tuple[DebugClient, ...] = ()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle (event loop) -------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop and start the periodic cache/health publishers. Idempotent."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.control is not None:
            sources = {
                "cache_stats": self.control.get_cache_stats,
                "health_status": self.control.get_health_status,
            }
            for event, fetch in sources.items():
                interval = self._intervals[event]
                if interval is not None:
                    task = asyncio.create_task(self._periodic(event, fetch, interval))
                    self._tasks.append(task)

    async def aclose(self) -> None:
        """Stop the periodic publishers and release every client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for client in self._clients:
            self.disconnect(client)
        self._loop = None

    def connect(self) -> DebugClient:
        client = DebugClient(self._queue_size, self._count_drop)
        self._clients = (*self._clients, client)
        if self._metrics is not None:
            self._metrics.ws_clients.set(len(self._clients))
        return client

    def disconnect(self, client: DebugClient) -> None:
        client.close()
        self._clients = tuple(c for c in self._clients if c is not client)
        if self._metrics is not None:
            self._metrics.ws_clients.set(len(self._clients))

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def send(self, client: DebugClient, mtype: str, rid: str | int | None, data: Any) -> None:
        """Queue one message for one client (event-loop thread only)."""
        client.put((mtype, rid, now_iso(), encode_data_safe(data)))

    # --- publishing (any thread, never blocks, never raises) --------------------------------

    def publish(self, mtype: str, data: Mapping[str, Any]) -> None:
        """Send event ``mtype`` (one of ``EVENT_TYPES``) to every client subscribed to it."""
        if mtype not in EVENT_TYPES:
            raise ValueError(f"unknown event type {mtype!r}; events: {', '.join(EVENT_TYPES)}")
        loop = self._loop
        if loop is None or not any(mtype in c.subscriptions for c in self._clients):
            return  # nobody is listening: cost is one set scan
        try:
            item = (mtype, None, now_iso(), encode_data_safe(data))
            if threading.get_ident() == self._loop_thread:
                self._fanout(item)
            else:
                loop.call_soon_threadsafe(self._fanout, item)
        except RuntimeError:
            pass  # the loop closed under us: the service is shutting down
        except Exception:
            log.warning("debug hub could not publish %s", mtype, exc_info=True)

    def _fanout(self, item: _Item) -> None:
        for client in self._clients:
            if item[0] in client.subscriptions:
                client.put(item)

    def _count_drop(self) -> None:
        if self._metrics is not None:
            self._metrics.ws_events_dropped.inc()

    def on_stage_end(self, event: StageEvent) -> None:
        self.publish("pipeline_stage", stage_data(event))

    def on_conversation_end(self, event: ConversationEvent) -> None:
        self.publish("conversation_end", conversation_data(event))

    def on_memory_snapshot(self, summary: Mapping[str, Any]) -> None:
        """Listener for the snapshot emitter (``summary`` holds at least ``snapshot_id``)."""
        self.publish("memory_snapshot", summary)

    def publish_health_status(self, status: Mapping[str, Any]) -> None:
        """Call on every health change (watchdog listener); also sent every health_interval."""
        self.publish("health_status", status)

    async def _periodic(
        self, event: str, fetch: Callable[[], Awaitable[Mapping[str, Any]]], interval: float
    ) -> None:
        failing = False
        while True:
            await asyncio.sleep(interval)
            if not any(event in c.subscriptions for c in self._clients):
                continue
            try:
                data = await asyncio.wait_for(fetch(), timeout=max(interval, 1.0))
                self.publish(event, data)
                failing = False
            except Exception as exc:
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "periodic %s failed: %s", event, type(exc).__name__)
                failing = True

    # --- commands (event loop) -------------------------------------------------------------

    async def execute(self, client: DebugClient, msg: ClientMessage) -> tuple[str, Any]:
        """Run one validated command; returns ``(result type, data)`` or raises ProtocolError."""
        if msg.type == "subscribe":
            wanted = set(msg.data["events"])
            client.subscriptions = frozenset(wanted)
            return "subscribe_result", {"events": [e for e in EVENT_TYPES if e in wanted]}
        if msg.type == "inject_fault" and not self.allow_fault_injection:
            raise ProtocolError(
                "forbidden",
                "fault injection is disabled; start the service "
                "with --allow-fault-injection to enable it",
            )
        control = self.control
        if control is None:
            raise ProtocolError("unavailable", f"{msg.type} is not available in this service")
        d = msg.data
        calls: dict[str, Callable[[], Awaitable[Mapping[str, Any]]]] = {
            "enable_debugging": lambda: control.enable_debugging(d["feature"], d["enabled"]),
            "take_memory_snapshot": control.take_memory_snapshot,
            "get_cache_stats": control.get_cache_stats,
            "get_health_status": control.get_health_status,
            "text_input": lambda: control.run_text_turn(d["text"], d.get("session_id")),
            "inject_fault": lambda: control.inject_fault(d["component"], d["fault"]),
            "reset_component": lambda: control.reset_component(d["component"]),
        }
        try:
            result = await calls[msg.type]()
        except PermissionError as exc:
            raise ProtocolError("forbidden", str(exc)[:200] or "not allowed") from None
        except ValueError as exc:
            raise ProtocolError("invalid_params", str(exc)[:200] or "invalid value") from None
        except Exception as exc:
            log.warning("debug command %s failed", msg.type, exc_info=True)
            raise ProtocolError(
                "internal_error", f"{msg.type} failed: {type(exc).__name__}"
            ) from None
        if not isinstance(result, Mapping):
            raise ProtocolError("internal_error", f"{msg.type} returned no object")
        return f"{msg.type}_result", dict(result)


def stage_data(event: StageEvent) -> dict[str, Any]:
    """The ``pipeline_stage`` payload: timings, sizes and ids, never content."""
    return {
        "conversation_id": event.conversation_id,
        "session_id": event.session_id,
        "turn": max(0, event.turn),
        "stage": event.stage,
        "status": event.status,
        "started_at": epoch_iso(event.started_at),
        "duration_ms": round(max(0.0, event.duration_s) * 1000.0, 3),
        "input_size": max(0, event.input_size),
        "output_size": max(0, event.output_size),
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "error_type": event.error_type,
    }


def conversation_data(event: ConversationEvent) -> dict[str, Any]:
    """The ``conversation_end`` payload."""
    return {
        "conversation_id": event.conversation_id,
        "session_id": event.session_id,
        "turn": max(0, event.turn),
        "status": event.status,
        "started_at": epoch_iso(event.started_at),
        "duration_ms": round(max(0.0, event.duration_s) * 1000.0, 3),
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "stages": [
            {
                "stage": s.stage,
                "status": s.status,
                "duration_ms": round(max(0.0, s.duration_s) * 1000.0, 3),
            }
            for s in event.stages
        ],
        "latency": dict(event.latency) if event.latency else None,
    }
