"""``coda-lite serve``: the assistant as a long-lived service on one port.

    coda-lite serve --host 127.0.0.1 --port 8765 [--allow-fault-injection]

    POST /v1/turns        {"text": "...", "session_id": "s1", "user_id": "ada"}
                          or {"audio_wav_base64": "..."}
                          -> {"transcript", "response", "conversation_id", "trace_id", ...,
                              "latency": {"voice_to_voice_us", "time_to_first_token_us",
                                          "time_to_first_audio_us", "breakdown_us", ...}}
                          memory is the user's (``user_id``, else ``session_id``, else
                          "default"): nothing is read or written across owners
    GET  /metrics         Prometheus (OpenMetrics with exemplars when asked for)
    GET  /health, /health/live, /health/ready
    POST /debug/faults    only with --allow-fault-injection
    POST /debug/components/{name}/reset   an operator re-enables a component marked failed
    GET  /ws              the debug WebSocket (docs/websocket.md)
    GET  /debug/          the debug console page (docs/console.md)
    GET  /debug/traces    recent turns from the local trace store, searchable; /{trace_id}
                          one turn's spans, /{trace_id}/log its conversation log

A turn interrupted by a newer turn in its session answers 409 ``interrupted``; a client
that disconnects mid-turn interrupts its turn (it ends with the reason ``interrupted``).
Bad requests get a 4xx with ``{"error": {"code", "message"}}``, and the service goes on.
Binding anywhere but loopback requires ``CODA_DEBUG_TOKEN``; without it the service refuses
to start and says why. With a token, every route but ``/metrics``, ``/health*`` and the
console page's own files needs ``Authorization: Bearer <token>``; without one, only loopback
``Host`` names are served (DNS rebinding). POSTs must be ``application/json`` (see
:mod:`coda_otel.web.security`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import gc
import logging
import resource
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from coda_lite.config import Config
from coda_lite.errors import InputError
from coda_lite.pipeline.admission import Overloaded
from coda_lite.pipeline.conversation import StageError, StageTimeoutError
from coda_lite.pipeline.turns import TurnInterrupted
from coda_lite.service.app import App, build_app
from coda_lite.speech.audio import AudioTooLongError
from coda_otel.console import (
    CONSOLE_OPEN_PATHS,
    ConsoleSettings,
    add_console_routes,
    add_trace_routes,
)
from coda_otel.files import InvalidIdError, validate_id
from coda_otel.sanitize import is_unicode_text
from coda_otel.web.bodies import json_object
from coda_otel.web.body_deadline import body_deadline
from coda_otel.web.connection_limit import ConnectionLimit
from coda_otel.web.errors import error_response
from coda_otel.web.health_routes import add_health_routes
from coda_otel.web.metrics_route import add_metrics_route
from coda_otel.web.security import (
    OPEN_PATHS,
    InsecureBindError,
    check_bind_security,
    debug_security,
)
from coda_otel.web.server_spans import server_spans
from coda_otel.ws.protocol import MAX_TEXT_CHARS
from coda_otel.ws.server import add_debug_ws_route

#: Requests that get a SERVER span (the turn under it): the ones a caller's trace continues into.
TRACED_PATHS = ("/v1/turns",)

log = logging.getLogger(__name__)

APP_KEY = web.AppKey("coda_app", App)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    """A JSON error body: ``{"error": {"code": ..., "message": ..., ...}}``."""
    return error_response(status, code, message, **extra)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text errors (404, 405, 413) and crashes into JSON errors."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return error(exc.status, code, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error(500, "internal_error", f"{type(exc).__name__} (see the service log)")


def _optional_id(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None:
        try:
            validate_id(value)
        except InvalidIdError as exc:
            raise ValueError(f"{key}: {exc}") from None
    return value


def parse_turn(body: bytes) -> tuple[str | bytes, dict[str, Any], bool]:
    """Validate a turn request; returns (text or WAV bytes, {session_id, user_id}, return_audio)."""
    data = json_object(body, "body")
    unknown = set(data) - {"text", "audio_wav_base64", "session_id", "user_id", "return_audio"}
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
    text, audio = data.get("text"), data.get("audio_wav_base64")
    if (text is None) == (audio is None):
        raise ValueError("give exactly one of 'text' or 'audio_wav_base64'")
    ids = {"session_id": _optional_id(data, "session_id"), "user_id": _optional_id(data, "user_id")}
    return_audio = data.get("return_audio", False)
    if not isinstance(return_audio, bool):
        raise ValueError("return_audio must be true or false")
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        if not is_unicode_text(text):
            raise ValueError("text is not valid Unicode (lone surrogate)")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
        return text, ids, return_audio
    if not isinstance(audio, str):
        raise ValueError("audio_wav_base64 must be a base64 string")
    try:
        wav = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"audio_wav_base64 is not valid base64: {exc}") from None
    return wav, ids, return_audio


async def post_turn(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    try:
        user_input, ids, return_audio = parse_turn(await request.read())
    except ValueError as exc:
        return error(400, "bad_request", str(exc))
    try:
        result = await app.run_turn_guarded(user_input, **ids)
    except TurnInterrupted as exc:
        return error(409, "interrupted", str(exc))
    except Overloaded as exc:  # refused before it started: come back shortly
        response = error(503, "overloaded", str(exc), reason=exc.reason)
        response.headers["Retry-After"] = str(int(exc.retry_after_s))
        return response
    except StageError as exc:
        if isinstance(exc.__cause__, AudioTooLongError):
            return error(413, "audio_too_long", str(exc), stage=exc.stage)
        if isinstance(exc.__cause__, InputError | ValueError):
            return error(422, "invalid_input", str(exc), stage=exc.stage)
        if isinstance(exc.__cause__, StageTimeoutError):
            return error(504, "stage_timeout", str(exc), stage=exc.stage)
        return error(502, "stage_failed", str(exc), stage=exc.stage)
    body: dict[str, Any] = {
        "transcript": result.transcript,
        "response": result.response,
        "conversation_id": result.conversation_id,
        "trace_id": result.trace_id,
        "session_id": result.session_id,
        "turn": result.turn,
        "timings_ms": {k: round(v * 1000, 3) for k, v in result.timings.items()},
        "latency": result.latency.to_dict() if result.latency else None,
    }
    if result.warnings:
        body["warnings"] = result.warnings  # e.g. the turn was answered but not remembered
    if return_audio:
        body["audio_wav_base64"] = base64.b64encode(result.audio).decode("ascii")
    return web.json_response(body)


def freeze_heap() -> int:
    """Move every object alive now out of the garbage collector's reach; returns how many.

    The models (embedding, local LLM) and the libraries behind them leave millions of
    long-lived objects that a full collection would walk each time: 300-430 ms with the
    embedding model alone, every few seconds under load, stopping every thread (a scrape,
    a liveness probe and every turn). Frozen after loading, they are never walked again;
    objects made afterwards are collected as usual."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _warm_up(app: App) -> None:
    """Load the local model in the background; a failure is logged, and turns say it too."""
    try:
        if await app.warm_up():
            log.info("llm model loaded; %d objects frozen out of garbage collection",
                     freeze_heap())  # fmt: skip
    except Exception as exc:
        log.error("llm model could not be loaded: %s", exc)


def _queue_full(app: App) -> Callable[[], bool] | None:
    """True while a new turn would be refused at once (readiness says ``overloaded``)."""
    admission = app.pipeline.admission
    if admission is None:
        return None
    return lambda: admission.full


def make_web_app(app: App) -> web.Application:
    """The aiohttp application for ``app`` (also used by tests on a free port)."""
    server = app.config.server
    security = debug_security(
        token=server.debug_token,
        allowed_origins=server.allowed_origins,
        open_paths=(*OPEN_PATHS, *CONSOLE_OPEN_PATHS),
    )
    middlewares: list[Any] = [json_errors, security, body_deadline(server.body_timeout)]
    if app.config.telemetry.enabled:  # a SERVER span per turn request, child of the caller's
        tracing = app.debugger  # its tracing switch turns these spans off too
        spans = server_spans(
            app.telemetry.tracer_provider, TRACED_PATHS, enabled=lambda: tracing.tracing
        )
        middlewares.insert(0, spans)
    web_app = web.Application(middlewares=middlewares, client_max_size=server.max_body_bytes)
    web_app[APP_KEY] = app
    web_app.router.add_post("/v1/turns", post_turn)
    add_metrics_route(web_app, app.registry)
    add_health_routes(
        web_app,
        app.watchdog,
        fault_injector=app.faults,
        allow_fault_injection=server.allow_fault_injection,
        overloaded=_queue_full(app),
    )
    add_debug_ws_route(
        web_app, app.hub, token=server.debug_token, allowed_origins=server.allowed_origins
    )
    add_console_routes(
        web_app,
        ConsoleSettings(
            snapshots=app.snapshots.store,
            token_required=bool(server.debug_token),
            allow_fault_injection=server.allow_fault_injection,
            sanitizer=app.debugger.sanitizer,
            debug_state=lambda: {
                "tracing": app.debugger.enabled,
                "snapshots": app.snapshots.enabled,
                "cache": app.cache_debugger.enabled,
            },
        ),
    )

    add_trace_routes(web_app, app.trace_store, logs_dir=app.config.pipeline_logs_dir)

    async def start_watchdog(_: web.Application) -> None:
        web_app["watchdog_task"] = asyncio.create_task(app.watchdog.start())
        web_app["warm_up_task"] = asyncio.create_task(_warm_up(app))

    async def shutdown(_: web.Application) -> None:
        app.watchdog.stop()
        for name in ("watchdog_task", "warm_up_task"):
            task = web_app.get(name)
            if task is not None:
                task.cancel()
        await app.aclose()

    web_app.on_startup.append(start_watchdog)
    web_app.on_cleanup.append(shutdown)
    return web_app


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one (often 1024 vs far more): each
    connection holds a descriptor, and a burst of clients must not take liveness down.
    Returns the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    except (ValueError, OSError) as exc:
        log.warning("could not raise the open-files limit: %s", exc)
    return soft


#: Descriptors kept for everything but client connections (model, database, logs, exports).
SPARE_FILES = 128


def connection_cap(wanted: int, open_files: int) -> int:
    """``server.max_connections``, lowered to what the open-files limit leaves room for."""
    if open_files == resource.RLIM_INFINITY or open_files <= 0:
        return wanted
    room = max(1, open_files - SPARE_FILES)
    if wanted > room:
        log.warning("server.max_connections %d lowered to %d: the open-files limit is %d",
                    wanted, room, open_files)  # fmt: skip
        return room
    return wanted


async def serve(app: App, web_app: web.Application, max_connections: int) -> None:
    """Serve ``web_app`` on the configured address until SIGINT or SIGTERM, holding at most
    ``max_connections`` client connections (beyond them: 503, liveness still answers)."""
    server = app.config.server
    # No access log: a debug token given as ?token= must not reach the log.
    # keepalive_timeout also bounds how long a new connection may take to send its request
    # headers (aiohttp arms it at connect): a slow-headers client is dropped after it.
    runner = web.AppRunner(
        web_app,
        access_log=None,
        keepalive_timeout=server.header_timeout,
        handler_cancellation=True,  # a client that leaves mid-turn interrupts its turn
    )
    await runner.setup()
    assert runner.server is not None  # set up above
    metrics = app.metrics
    limit = ConnectionLimit(
        runner.server, max_connections, on_refused=metrics.http_connections_refused.inc
    )
    metrics.http_connections_open.set_function(lambda: limit.open)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    listener = None
    try:
        listener = await loop.create_server(
            limit.protocol, server.host, server.port, reuse_address=True
        )
        await stop.wait()
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()  # closes connections, then the app's cleanup (the pipeline)
        if listener is not None:
            await listener.wait_closed()


def main(args: argparse.Namespace, config: Config) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    server = config.server
    try:
        check_bind_security(server.host, server.debug_token)
    except InsecureBindError as exc:
        print(f"coda-lite serve: refusing to start: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    open_files = raise_open_files_limit()  # many clients at once must not run out of them
    cap = connection_cap(server.max_connections, open_files)
    app = build_app(config, set_global_tracer=True)
    log.info("%d objects frozen out of garbage collection", freeze_heap())  # models loaded
    print(f"coda-lite serve: http://{server.host}:{server.port} (traces: {app.outputs['traces']})")
    try:
        asyncio.run(serve(app, make_web_app(app), cap))
    except OSError as exc:  # the address is taken or cannot be bound
        print(f"coda-lite serve: cannot listen on {server.host}:{server.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
