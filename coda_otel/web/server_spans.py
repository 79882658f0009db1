"""A SERVER span per traced HTTP request, continuing the caller's W3C trace context.

    web_app = web.Application(middlewares=[server_spans(provider, {"/v1/turns"}), ...])

The span comes from the OpenTelemetry aiohttp server instrumentation (HTTP semantic
conventions, ``traceparent`` / ``tracestate`` / ``baggage`` read by the global propagator, so
``OTEL_PROPAGATORS`` is honoured); work done by the handler (a turn's ``conversation`` span)
nests under it. Only the paths given are traced: scrapes, health probes and the console's
polling would otherwise fill the trace store with spans nobody asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_server import create_aiohttp_middleware

__all__ = ["server_spans"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def server_spans(
    tracer_provider: trace.TracerProvider | None, paths: Collection[str]
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """An aiohttp middleware: requests to ``paths`` get a SERVER span, others pass through."""
    traced = frozenset(paths)
    instrumented = create_aiohttp_middleware(tracer_provider=tracer_provider)

    @web.middleware
    async def server_span(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in traced:
            return await handler(request)
        response: web.StreamResponse = await instrumented(request, handler)
        return response

    return server_span
