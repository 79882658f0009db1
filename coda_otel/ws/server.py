"""The debug WebSocket endpoint (aiohttp): authentication, origin check, limits, dispatch.

Secure by default. At startup, refuse to expose the API beyond loopback without a token::

    check_bind_security(config.server.host, config.server.debug_token)  # raises InsecureBindError
    add_debug_ws_route(app, hub, token=config.server.debug_token,
                       allowed_origins=config.server.allowed_origins)

With a token, a client must present it at connect (``Authorization: Bearer <token>``, or
from a browser, which cannot set that header, the subprotocols ``coda-debug`` and
``coda-token.<base64url of the token>``; ``?token=<token>`` also works but lands in access
logs; 401 otherwise); without one, a ``Host`` that is not a loopback name is
refused (403: a page that rebinds its domain to 127.0.0.1 still sends its own name). A
browser's ``Origin`` must be the service's own host or listed in ``allowed_origins`` (403
otherwise). Each connection gets a token bucket (``rate``) and a frame size limit; anything
wrong is answered with an ``error`` message and the connection stays open. The route also
starts the hub with the app and closes it on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import weakref
from collections.abc import Callable, Iterable

from aiohttp import WSCloseCode, WSMsgType, web

from coda_otel.web.errors import error_response
from coda_otel.web.security import (
    SUBPROTOCOL,
    InsecureBindError,
    bearer_ok,
    check_bind_security,
    check_token,
    host_header_is_loopback,
    is_loopback,
    normalise_origins,
    origin_allowed,
    subprotocol_token,
)
from coda_otel.ws.hub import DebugClient, DebugHub
from coda_otel.ws.protocol import (
    COMMANDS,
    EVENT_TYPES,
    PROTOCOL_VERSION,
    ClientMessage,
    ErrorCode,
    ProtocolError,
    parse_client_message,
)

log = logging.getLogger(__name__)

#: Frames up to this many times ``max_message_bytes`` are read and answered with "too_large";
#: beyond it aiohttp closes the connection (1009) without reading the frame into memory.
TRANSPORT_LIMIT_FACTOR = 16


class TokenBucket:
    """``rate`` messages per second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class _DebugWsHandler:
    def __init__(
        self,
        hub: DebugHub,
        *,
        token: str | None,
        allowed_origins: Iterable[str],
        max_message_bytes: int,
        rate: tuple[float, int],
        max_inflight: int,
        heartbeat: float | None,
    ) -> None:
        self.hub = hub
        self.token = token.encode("utf-8") if token is not None else None
        self.allowed_origins = normalise_origins(allowed_origins)
        self.max_bytes = max_message_bytes
        self.rate = rate
        TokenBucket(*rate)  # validate now, not at the first connection
        self.max_inflight = max_inflight
        self.heartbeat = heartbeat
        self.sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None or bearer_ok(request, self.token, allow_query=True):
            return True
        offered = subprotocol_token(request)
        return offered is not None and hmac.compare_digest(offered, self.token)

    def _origin_allowed(self, request: web.Request) -> bool:
        return origin_allowed(request, self.allowed_origins)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return error_response(
                401,
                "unauthorized",
                "a valid debug token is required (Authorization: Bearer <token>, the "
                "coda-token.<base64url> subprotocol, or ?token=<token>)",
                headers={"WWW-Authenticate": 'Bearer realm="coda-debug"'},
            )
        if self.token is None and not host_header_is_loopback(request):
            return error_response(  # no token means loopback only: refuse rebound names
                403, "forbidden_host", "without a token only a loopback Host is served"
            )
        if not self._origin_allowed(request):
            return error_response(
                403, "forbidden_origin", "origin not allowed; add it to server.allowed_origins"
            )
        ws = web.WebSocketResponse(
            max_msg_size=self.max_bytes * TRANSPORT_LIMIT_FACTOR,
            heartbeat=self.heartbeat,
            protocols=(SUBPROTOCOL,),
        )
        if not ws.can_prepare(request).ok:
            return error_response(426, "upgrade_required", "WebSocket upgrade expected")
        await ws.prepare(request)
        self.sockets.add(ws)
        client = self.hub.connect()
        writer = asyncio.create_task(self._write(ws, client))
        bucket = TokenBucket(*self.rate)
        running: set[asyncio.Task[None]] = set()
        try:
            self.hub.send(
                client,
                "hello",
                None,
                {
                    "protocol": PROTOCOL_VERSION,
                    "events": list(EVENT_TYPES),
                    "commands": list(COMMANDS),
                    "max_message_bytes": self.max_bytes,
                    "subscribed": [e for e in EVENT_TYPES if e in client.subscriptions],
                },
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(client, msg.data, bucket, running)
                elif msg.type == WSMsgType.BINARY:
                    self._error(
                        client,
                        None,
                        "bad_message",
                        "binary frames are not supported; send JSON text frames",
                    )
                else:  # ERROR: e.g. a frame beyond the transport limit; aiohttp closes
                    log.info("debug websocket closed: %s", ws.exception())
                    break
        finally:
            self.hub.disconnect(client)
            for task in (*running, writer):
                task.cancel()
            await asyncio.gather(*running, writer, return_exceptions=True)
        return ws

    def _on_text(
        self, client: DebugClient, text: str, bucket: TokenBucket, running: set[asyncio.Task[None]]
    ) -> None:
        if len(text) > self.max_bytes or (
            len(text) * 4 > self.max_bytes and len(text.encode("utf-8")) > self.max_bytes
        ):
            self._error(client, None, "too_large", f"message exceeds {self.max_bytes} bytes")
            return
        allowed = bucket.take()
        try:
            msg = parse_client_message(text)
        except ProtocolError as exc:
            if allowed:
                self._error(client, exc.request_id, exc.code, exc.message)
            else:
                self._rate_limited(client, exc.request_id)
            return
        if not allowed:
            self._rate_limited(client, msg.id)
        elif len(running) >= self.max_inflight:
            self._error(
                client,
                msg.id,
                "busy",
                f"{self.max_inflight} commands are still "
                "running on this connection; wait for their results",
            )
        else:
            task = asyncio.create_task(self._run(client, msg))
            running.add(task)
            task.add_done_callback(running.discard)

    async def _run(self, client: DebugClient, msg: ClientMessage) -> None:
        try:
            rtype, data = await self.hub.execute(client, msg)
        except ProtocolError as exc:
            self._error(client, msg.id, exc.code, exc.message)
        except Exception as exc:  # the hub maps handler errors; this is a last resort
            log.exception("debug command %s crashed", msg.type)
            self._error(client, msg.id, "internal_error", f"{type(exc).__name__}")
        else:
            self.hub.send(client, rtype, msg.id, data)

    def _rate_limited(self, client: DebugClient, rid: str | int | None) -> None:
        self._error(
            client,
            rid,
            "rate_limited",
            f"too many messages: at most {self.rate[0]:g} per second (bursts of {self.rate[1]})",
        )

    def _error(
        self, client: DebugClient, rid: str | int | None, code: ErrorCode, text: str
    ) -> None:
        self.hub.send(client, "error", rid, {"code": code, "message": text})

    @staticmethod
    async def _write(ws: web.WebSocketResponse, client: DebugClient) -> None:
        with contextlib.suppress(ConnectionError):
            while frames := await client.next_frames():
                for frame in frames:
                    await ws.send_str(frame)

    async def shutdown(self, app: web.Application) -> None:
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def add_debug_ws_route(
    app: web.Application,
    hub: DebugHub,
    *,
    path: str = "/ws",
    token: str | None = None,
    allowed_origins: Iterable[str] = (),
    max_message_bytes: int = 64 * 1024,
    rate: tuple[float, int] = (20.0, 40),
    max_inflight: int = 4,
    heartbeat: float | None = 30.0,
) -> None:
    """Serve the debug WebSocket at ``path`` and tie the hub's life to the app's.

    ``rate`` is (messages per second, burst) per connection; ``max_inflight`` bounds the
    commands one connection may have running at once (``text_input`` runs a whole turn).
    """
    check_token(token)
    if max_message_bytes < 1024:
        raise ValueError(f"max_message_bytes must be at least 1024, got {max_message_bytes}")
    handler = _DebugWsHandler(
        hub,
        token=token,
        allowed_origins=allowed_origins,
        max_message_bytes=max_message_bytes,
        rate=rate,
        max_inflight=max_inflight,
        heartbeat=heartbeat,
    )
    app.router.add_get(path, handler.handle)

    async def start_hub(_: web.Application) -> None:
        await hub.start()

    async def close_hub(_: web.Application) -> None:
        await hub.aclose()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(handler.shutdown)
    app.on_cleanup.append(close_hub)


__all__ = [
    "InsecureBindError",
    "TokenBucket",
    "add_debug_ws_route",
    "check_bind_security",
    "is_loopback",
]
