"""A SERVER span per traced HTTP request, continuing the caller's W3C trace context.

    web_app = web.Application(middlewares=[server_spans(provider, {"/v1/turns"}), ...])

The span follows the HTTP server semantic conventions (name ``POST /v1/turns``, kind SERVER,
``http.request.method``, ``http.route``, ``url.path``, ``url.scheme``, ``server.address`` /
``server.port``, ``client.address``, ``user_agent.original``, ``http.response.status_code``;
status error and ``error.type`` for a 5xx). Its parent is read from the request's headers by
the global propagator, so ``traceparent`` / ``tracestate`` / ``baggage`` (or whatever
``OTEL_PROPAGATORS`` names) continue the caller's trace, and work done by the handler (a
turn's ``conversation`` span) nests under it. Only the paths given are traced: scrapes,
health probes and the console's polling would otherwise fill the trace store with spans nobody
asked for. (The contrib aiohttp server instrumentation does the same for a whole application
once globally instrumented; used on its own, its middleware fails on every request.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

__all__ = ["server_spans"]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _request_attributes(request: web.Request, route: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "http.request.method": request.method,
        "http.route": route,
        "url.path": request.path,
        "url.scheme": request.scheme,
    }
    try:  # a hostile Host header ("a:b,c", "h:x") makes the URL unparsable: no address then
        host, port = request.url.host, request.url.port
    except ValueError:
        host, port = None, None
    if host:
        attrs["server.address"] = host
    if port is not None:
        attrs["server.port"] = port
    if request.remote:
        attrs["client.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attrs["user_agent.original"] = agent[:256]
    return attrs


def _finish(span: trace.Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:  # a server span is an error only for the server's own failures
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))


def server_spans(
    tracer_provider: trace.TracerProvider | None,
    paths: Collection[str],
    *,
    enabled: Callable[[], bool] = lambda: True,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware: requests to ``paths`` get a SERVER span, others pass through;
    ``enabled`` is asked per request (a tracing switch turned off at run time)."""
    from coda_otel import __version__

    traced = frozenset(paths)
    tracer = trace.get_tracer("coda_otel.web", __version__, tracer_provider)

    @web.middleware
    async def server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in traced or not enabled():
            return await handler(request)
        parent = propagate.extract(request.headers)
        span = tracer.start_span(
            f"{request.method} {request.path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=_request_attributes(request, request.path),
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _finish(span, exc.status)
            raise
        except asyncio.CancelledError:  # the client left: not the server's failure
            raise
        except Exception as exc:
            span.record_exception(exc)
            _finish(span, 500)
            raise
        else:
            _finish(span, response.status)
            return response
        finally:
            otel_context.detach(token)
            span.end()

    return server_span
