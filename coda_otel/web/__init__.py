"""HTTP routes for aiohttp: ``/metrics``, ``/health*``, and the security every route shares.

    from aiohttp import web
    from coda_otel.web import add_health_routes, add_metrics_route

    app = web.Application()
    add_metrics_route(app, metrics.registry)
    add_health_routes(app, watchdog)

Every refusal and failure answers ``{"error": {"code": ..., "message": ...}}``
(:func:`coda_otel.web.errors.error_response`).

Modules: ``metrics_route`` (Prometheus exposition, gzip), ``health_routes`` (live, ready,
components, reset, faults), ``security`` (bearer token, loopback Host, Origin), ``errors``
(the one error shape).
"""

from __future__ import annotations

from coda_otel.web.errors import error_response
from coda_otel.web.health_routes import add_health_routes
from coda_otel.web.metrics_route import add_metrics_route

__all__ = ["add_health_routes", "add_metrics_route", "error_response"]
