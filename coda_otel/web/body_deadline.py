"""Request bodies must arrive in time: a body still incomplete after its deadline is refused.

    web_app = web.Application(middlewares=[json_errors, body_deadline(30.0), ...])

Each request with a body (POST, PUT, PATCH) has ``timeout_s`` seconds to deliver all of it;
the middleware reads it before the handler runs (aiohttp keeps it, so the handler's own
``await request.read()`` returns at once). A client that trickles or never ends its body (a
chunked body without its last chunk) gets 408 in the one error shape and its connection is
closed, instead of holding a connection, a file descriptor and a handler forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from coda_otel.web.errors import error_response

__all__ = ["body_deadline"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_deadline(
    timeout_s: float,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware giving each request body ``timeout_s`` seconds to arrive."""
    if not timeout_s > 0:
        raise ValueError(f"the body deadline must be positive, got {timeout_s!r}")

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in ("POST", "PUT", "PATCH") and request.body_exists:
            try:
                async with asyncio.timeout(timeout_s):
                    await request.read()
            except TimeoutError:
                response = error_response(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {timeout_s:g} s",
                )
                response.force_close()  # the rest of that body is never read
                return response
        return await handler(request)

    return read_body_in_time
