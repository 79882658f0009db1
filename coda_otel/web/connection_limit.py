"""A cap on the connections an aiohttp server holds: beyond it, a new connection is answered
at once and closed, and liveness keeps answering.

Each open connection holds a file descriptor and a request handler; a flood of clients that
never finish (or a burst far beyond what the service can serve) must not exhaust them and
take the whole process down. :class:`ConnectionLimit` is the protocol factory handed to
``loop.create_server``: below the cap it returns aiohttp's own request handler (the runner's
low-level :class:`aiohttp.web.Server`); at the cap it returns a small protocol that reads the
request line, answers ``GET /health/live`` with 200 (the process is alive: this very answer
comes from its event loop) and anything else with 503 ``overloaded`` and ``Retry-After``, in
the one error shape, then closes::

    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    limit = ConnectionLimit(runner.server, max_connections=512, on_refused=refused.inc)
    server = await asyncio.get_running_loop().create_server(limit.protocol, "127.0.0.1", 8765)
    ...
    server.close()
    await runner.cleanup()

Connections are counted as they are accepted (the factory's own count, not aiohttp's list,
which fills a step later: a burst accepted at once would pass the cap), and uncounted when
they close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from aiohttp import web

from coda_otel.web.errors import error_body

#: Bytes a refused connection may send before its request line is judged (or it is closed).
REQUEST_LINE_MAX = 8192
#: Seconds a refused connection may take to send its request line.
REFUSAL_TIMEOUT_S = 2.0


def _response(status: str, body: dict[str, object], extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


class _Refusal(asyncio.Protocol):
    """One connection beyond the cap: answer its first request line, then close."""

    def __init__(self, answer_live: bytes, answer_other: bytes, live_path: bytes) -> None:
        self._live, self._other, self._path = answer_live, answer_other, live_path
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_TIMEOUT_S, transport.close)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0 and len(self._buffer) < REQUEST_LINE_MAX:
            return  # the request line is not complete yet
        parts = self._buffer[: max(end, 0)].split(b" ")
        live = len(parts) == 3 and parts[0] in (b"GET", b"HEAD") and parts[1] == self._path
        answer = self._live if live else self._other
        if parts[0] == b"HEAD":  # the head alone, as HTTP wants for HEAD
            answer = answer[: answer.index(b"\r\n\r\n") + 4]
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(answer)
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Counted(asyncio.Protocol):
    """aiohttp's handler for one connection, telling the limit when the connection ends."""

    def __init__(self, inner: asyncio.Protocol, closed: Callable[[], None]) -> None:
        self._inner, self._closed = inner, closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._inner.connection_lost(exc)
        finally:
            self._closed()


class ConnectionLimit:
    """A protocol factory for ``loop.create_server`` that holds at most ``max_connections``.

    ``on_refused()`` hears each connection refused (a counter's ``inc``); ``open`` is how many
    the server holds now (a gauge's function). ``retry_after_s`` goes into ``Retry-After``.
    """

    def __init__(
        self,
        server: web.Server,
        max_connections: int,
        *,
        on_refused: Callable[[], None] | None = None,
        retry_after_s: int = 1,
        live_path: str = "/health/live",
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections}")
        self.server = server
        self.max_connections = max_connections
        self.refused = 0
        self._held = 0
        self._on_refused = on_refused
        message = (
            f"the server holds its maximum of {max_connections} connections; "
            f"retry after {retry_after_s} s"
        )
        self._answer_other = _response(
            "503 Service Unavailable",
            error_body("overloaded", message, retry_after_s=retry_after_s),
            f"Retry-After: {retry_after_s}\r\n",
        )
        self._answer_live = _response("200 OK", {"status": "alive"})
        self._live_path = live_path.encode("ascii")

    @property
    def open(self) -> int:
        """Connections the server holds now."""
        return self._held

    def _closed(self) -> None:
        self._held -= 1

    def protocol(self) -> asyncio.BaseProtocol:
        """aiohttp's handler for a connection under the cap, else a refusal."""
        if self._held < self.max_connections:
            self._held += 1  # the event loop's thread only: no lock needed
            return _Counted(self.server(), self._closed)
        self.refused += 1
        if self._on_refused is not None:
            with contextlib.suppress(Exception):  # counting must never break the accept loop
                self._on_refused()
        return _Refusal(self._answer_live, self._answer_other, self._live_path)
