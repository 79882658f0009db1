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
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate

from coda_otel.events import ConversationEvent, StageEvent, StallEvent
from coda_otel.metrics import CodaMetrics
from coda_otel.ws.client import DebugClient, Item
from coda_otel.ws.control import DebugControl, ServiceOverloaded
from coda_otel.ws.payloads import conversation_data, stage_data, stall_data
from coda_otel.ws.protocol import (
    EVENT_TYPES,
    ClientMessage,
    ProtocolError,
    encode_data_safe,
    now_iso,
)

log = logging.getLogger(__name__)

# DebugControl, DebugClient and the payload builders are re-exported for existing imports.
__all__ = ["DebugClient", "DebugControl", "DebugHub", "conversation_data", "stage_data"]


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

    def _fanout(self, item: Item) -> None:
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

    def on_stage_stalled(self, event: StallEvent) -> None:
        self.publish("stage_stalled", stall_data(event))

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
            "take_memory_snapshot": lambda: control.take_memory_snapshot(
                **({"user_id": d["user_id"]} if "user_id" in d else {})
            ),
            "get_cache_stats": control.get_cache_stats,
            "get_health_status": control.get_health_status,
            "text_input": lambda: control.run_text_turn(
                d["text"],
                d.get("session_id"),
                **({"user_id": d["user_id"]} if "user_id" in d else {}),
            ),
            "inject_fault": lambda: control.inject_fault(d["component"], d["fault"]),
            "reset_component": lambda: control.reset_component(d["component"]),
            "interrupt": lambda: control.interrupt(d["session_id"]),
        }
        token = None
        if msg.type == "text_input" and "trace_context" in d:
            # the turn's task is created under this context, so the turn joins that trace
            token = otel_context.attach(propagate.extract(d["trace_context"]))
        try:
            result = await calls[msg.type]()
        except PermissionError as exc:
            raise ProtocolError("forbidden", str(exc)[:200] or "not allowed") from None
        except ServiceOverloaded as exc:
            raise ProtocolError(
                "overloaded", f"{str(exc)[:200]} (retry after {exc.retry_after_s:g} s)"
            ) from None
        except ValueError as exc:
            raise ProtocolError("invalid_params", str(exc)[:200] or "invalid value") from None
        except Exception as exc:
            log.warning("debug command %s failed", msg.type, exc_info=True)
            raise ProtocolError(
                "internal_error", f"{msg.type} failed: {type(exc).__name__}"
            ) from None
        finally:
            if token is not None:
                otel_context.detach(token)
        if not isinstance(result, Mapping):
            raise ProtocolError("internal_error", f"{msg.type} returned no object")
        return f"{msg.type}_result", dict(result)
