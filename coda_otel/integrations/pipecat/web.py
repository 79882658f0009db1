"""The debug WebSocket, the ``/debug/`` console and ``/metrics`` for a Pipecat app (aiohttp).

The same routes Coda Lite serves, fed by the Pipecat observer's turns::

    hub = DebugHub(PipecatDebugControl(debugger, worker, observer=observer), metrics=metrics)
    debugger.add_listener(hub)
    app = web.Application(middlewares=[debug_security(token=None,
                                                      open_paths=DEBUG_OPEN_PATHS)])
    add_debug_routes(app, hub, registry=metrics.registry)   # /ws, /debug/, /metrics

or all of it at once: ``app = debug_app(debugger, metrics, PipecatDebugControl(...))``.
Then open ``http://127.0.0.1:<port>/debug/``: the Pipeline view shows each Pipecat turn's
stages as they end, stalls while they run, interruptions; its text box sends a typed turn
into the pipeline (a ``TranscriptionFrame``) and its Interrupt button an ``InterruptionFrame``.
Binding beyond loopback needs a token, exactly as for Coda Lite
(:func:`coda_otel.web.security.check_bind_security`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from pipecat.frames.frames import Frame, InterruptionFrame, TranscriptionFrame
from prometheus_client import CollectorRegistry

from coda_otel.console import CONSOLE_OPEN_PATHS, ConsoleSettings, add_console_routes
from coda_otel.events import ConversationEvent, ListenerBase
from coda_otel.metrics import CodaMetrics
from coda_otel.sanitize import Sanitizer
from coda_otel.web.metrics_route import add_metrics_route
from coda_otel.web.security import OPEN_PATHS, debug_security
from coda_otel.ws.hub import DebugHub
from coda_otel.ws.protocol import MAX_TEXT_CHARS
from coda_otel.ws.server import add_debug_ws_route

__all__ = ["DEBUG_OPEN_PATHS", "PipecatDebugControl", "add_debug_routes", "debug_app"]

#: Paths readable without the token: /metrics, /health*, the console page and its files.
DEBUG_OPEN_PATHS: tuple[str, ...] = (*OPEN_PATHS, *CONSOLE_OPEN_PATHS)


class _Worker(Protocol):
    async def queue_frame(self, frame: Frame) -> None: ...


class _Answering(Protocol):
    @property
    def answering(self) -> str | None: ...


class _Switchable(Protocol):
    enabled: bool

    def add_listener(self, listener: Any) -> None: ...


class PipecatDebugControl(ListenerBase):
    """The console's commands for a Pipecat pipeline (coda-otel's ``DebugControl``).

    ``text_input`` queues a ``TranscriptionFrame`` on the worker and answers when that turn
    ends; ``interrupt`` queues an ``InterruptionFrame``; ``enable_debugging("tracing")``
    switches the debugger. There is no memory, cache or watchdog in a plain Pipecat app:
    those commands say so (``invalid_params``) and the health view shows the pipeline only.
    """

    def __init__(
        self,
        debugger: _Switchable,
        worker: _Worker,
        *,
        observer: _Answering | None = None,
        turn_timeout: float = 300.0,
    ) -> None:
        self.debugger = debugger
        self.worker = worker
        self.observer = observer
        self.turn_timeout = turn_timeout
        self._waiting: list[asyncio.Future[ConversationEvent]] = []
        self._last: ConversationEvent | None = None
        debugger.add_listener(self)

    # --- listener: turns ending -------------------------------------------------------
    def on_conversation_end(self, event: ConversationEvent) -> None:
        self._last = event
        waiting, self._waiting = self._waiting, []
        for future in waiting:
            if not future.done():
                future.get_loop().call_soon_threadsafe(_settle, future, event)

    # --- DebugControl -------------------------------------------------------------------
    async def enable_debugging(self, feature: str, enabled: bool) -> Mapping[str, Any]:
        if feature not in ("tracing", "all"):
            raise ValueError(f"{feature!r} is not available in a Pipecat app (only tracing)")
        self.debugger.enabled = enabled
        return {"feature": feature, "enabled": enabled, "state": {"tracing": enabled}}

    async def take_memory_snapshot(self, *, user_id: str | None = None) -> Mapping[str, Any]:
        raise ValueError("this Pipecat app has no memory to snapshot")

    async def get_cache_stats(self) -> Mapping[str, Any]:
        return {"stats": {}, "recommendations": []}

    async def get_health_status(self) -> Mapping[str, Any]:
        last = self._last
        status = "healthy" if last is None or last.status != "error" else "degraded"
        return {
            "overall_health": status,
            "ready": True,
            "components": {},
            "last_turn": None if last is None else {"status": last.status, "turn": last.turn},
        }

    async def run_text_turn(
        self, text: str, session_id: str | None, *, user_id: str | None = None
    ) -> Mapping[str, Any]:
        if not text.strip():
            raise ValueError("text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
        future: asyncio.Future[ConversationEvent] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        stamp = datetime.now(UTC).isoformat()
        await self.worker.queue_frame(TranscriptionFrame(text, user_id or "console", stamp))
        try:
            event = await asyncio.wait_for(future, self.turn_timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiting.remove(future)
        return {
            "conversation_id": event.conversation_id,
            "trace_id": event.trace_id,
            "turn": event.turn,
            "transcript": text,
            "interrupted": event.end_reason == "interrupted",
            "status": event.status,
        }

    async def inject_fault(self, component: str, fault: str) -> Mapping[str, Any]:
        raise PermissionError("fault injection is not available in a Pipecat app")

    async def reset_component(self, component: str) -> Mapping[str, Any]:
        raise ValueError("a Pipecat app has no watchdog components to reset")

    async def interrupt(self, session_id: str) -> Mapping[str, Any]:
        """Queue an ``InterruptionFrame``; ``interrupted`` says whether an answer was running
        (known when the control was given the observer; otherwise the frame is sent anyway)."""
        running = self.observer.answering if self.observer is not None else None
        if self.observer is None or running is not None:
            await self.worker.queue_frame(InterruptionFrame())
        return {
            "session_id": session_id,
            "interrupted": running is not None or self.observer is None,
            "conversation_id": running,
        }


def _settle(future: asyncio.Future[ConversationEvent], event: ConversationEvent) -> None:
    if not future.done():
        future.set_result(event)


def add_debug_routes(
    app: web.Application,
    hub: DebugHub,
    *,
    registry: CollectorRegistry | None = None,
    token: str | None = None,
    allowed_origins: Iterable[str] = (),
    sanitizer: Sanitizer | None = None,
    tracing_enabled: _Switchable | None = None,
) -> None:
    """Serve ``/ws`` (the hub), ``/debug/`` (the console) and, given ``registry``, ``/metrics``.

    The app should carry :func:`coda_otel.web.security.debug_security` with
    :data:`DEBUG_OPEN_PATHS` (``debug_app`` does), as Coda Lite's service does.
    """
    if registry is not None:
        add_metrics_route(app, registry)
    add_debug_ws_route(app, hub, token=token, allowed_origins=allowed_origins)
    state = (lambda: {"tracing": tracing_enabled.enabled}) if tracing_enabled else None
    add_console_routes(
        app,
        ConsoleSettings(
            token_required=bool(token),
            sanitizer=sanitizer or Sanitizer.from_env(),
            debug_state=state,
        ),
    )


def debug_app(
    debugger: Any,
    metrics: CodaMetrics,
    control: PipecatDebugControl | None = None,
    *,
    token: str | None = None,
    allowed_origins: Iterable[str] = (),
) -> web.Application:
    """An aiohttp app with the debug routes, its security middleware and a hub on ``debugger``."""
    hub = DebugHub(control, metrics=metrics, cache_stats_interval=None, health_interval=5.0)
    debugger.add_listener(hub)
    security = debug_security(
        token=token, allowed_origins=allowed_origins, open_paths=DEBUG_OPEN_PATHS
    )
    app = web.Application(middlewares=[security])
    add_debug_routes(
        app,
        hub,
        registry=metrics.registry,
        token=token,
        allowed_origins=allowed_origins,
        sanitizer=getattr(debugger, "sanitizer", None),
        tracing_enabled=debugger,
    )
    return app
