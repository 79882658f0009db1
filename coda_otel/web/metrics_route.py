"""``GET /metrics`` for an aiohttp application, in the format the scraper asks for.

OpenMetrics (with exemplars) when ``Accept`` names ``application/openmetrics-text``, the
classic Prometheus text format otherwise, gzip when ``Accept-Encoding`` allows it, and
``?name[]=...`` to restrict the families, exactly like prometheus_client's own servers
(its ``choose_encoder`` picks the format). Collection and compression run on the scrape's own
thread (:data:`SCRAPE_EXECUTOR`), never in the default executor where pipeline work queues:
a scrape stays fast exactly when the pipeline is saturated or stalled. Collectors must not
wait on pipeline locks either (read cached values)::

    app = web.Application()
    add_metrics_route(app, metrics.registry)          # or:
    app.router.add_get("/metrics", metrics_handler(metrics.registry))
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Bodies smaller than this are sent uncompressed (gzip would not pay for itself).
GZIP_MIN_BYTES = 512
#: Threads that only render scrapes: busy pipeline work in the default executor cannot delay
#: them (two, so one slow collector does not hold up a second scraper).
SCRAPE_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="coda-scrape")


def wants_gzip(accept_encoding: str) -> bool:
    """True when ``Accept-Encoding`` accepts gzip (``gzip;q=0`` refuses it)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in {"gzip", "*"}:
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def _render(registry: CollectorRegistry, accept: str, names: list[str]) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    source = registry.restricted_registry(names) if names else registry
    return encoder(source), content_type


def metrics_handler(registry: CollectorRegistry) -> Handler:
    """An aiohttp handler that serves ``registry`` (see the module docstring)."""

    async def handle_metrics(request: web.Request) -> web.StreamResponse:
        accept = request.headers.get("Accept", "")
        names = request.query.getall("name[]", [])
        loop = asyncio.get_running_loop()
        try:
            body, content_type = await loop.run_in_executor(
                SCRAPE_EXECUTOR, _render, registry, accept, names
            )
        except Exception as exc:  # a broken collector must not take the service down
            raise web.HTTPInternalServerError(
                text=f"metrics collection failed: {type(exc).__name__}"
            ) from None
        headers = {"Content-Type": content_type, "Vary": "Accept, Accept-Encoding"}
        if len(body) >= GZIP_MIN_BYTES and wants_gzip(request.headers.get("Accept-Encoding", "")):
            body = await loop.run_in_executor(SCRAPE_EXECUTOR, gzip.compress, body, 6)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    return handle_metrics


def add_metrics_route(
    app: web.Application, registry: CollectorRegistry, path: str = "/metrics"
) -> None:
    """Serve ``registry`` at ``GET path`` (HEAD too) on ``app``."""
    app.router.add_get(path, metrics_handler(registry))
