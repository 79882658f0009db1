"""A ``/metrics`` scrape with 10 caches and 20 components registered, over real HTTP.

    python -m benchmarks.run --only scrape

A real aiohttp server (:func:`coda_otel.web.metrics_route.add_metrics_route`) on a free 127.0.0.1
port and a real aiohttp client; the registry is :class:`~coda_otel.metrics.CodaMetrics` with
the process collector, every stage observed (with exemplars), 10 caches and 20 components.
Rows: the scrape as Prometheus does it (OpenMetrics, gzip) and in the classic text format,
each beside ``generate_latest`` on the same registry (the rendering alone); budget 20 ms.
"""

from __future__ import annotations

import socket
import statistics
import time

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from benchmarks.common import Result, run_async
from coda_otel.cache.debugger import CacheDebugger
from coda_otel.metrics import STAGES, CodaMetrics
from coda_otel.web.metrics_route import add_metrics_route

CACHES = 10
COMPONENTS = 20
BUDGET_S = 0.020
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


def populated_metrics() -> CodaMetrics:
    """A registry as a busy service has it: every family with series and values."""
    metrics = CodaMetrics(CollectorRegistry())
    debugger = CacheDebugger(metrics=metrics)
    for i in range(CACHES):
        name = f"cache_{i}"
        debugger.register_cache(name, maxsize=1024, ttl=60.0)
        debugger.record_cache_access(name, "k", hit=False, computation_time_ms=12.0)
        debugger.record_cache_access(name, "k", hit=True)
        debugger.record_eviction(name, "size")
        debugger.set_entries(name, 100 + i)
    for i in range(COMPONENTS):
        component = f"component_{i}"
        metrics.register_component(component)
        metrics.component_up.labels(component=component).set(1)
        metrics.component_check_duration.labels(component=component).observe(0.002)
    for n, stage in enumerate(STAGES):
        exemplar = {"trace_id": f"{n + 1:032x}"}
        metrics.stage_duration.labels(stage=stage).observe(0.01 * (n + 1), exemplar=exemplar)
    metrics.conversation_duration.observe(0.2)
    metrics.conversations.labels(status="ok").inc(42)
    return metrics


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _scrape_times(metrics: CodaMetrics, number: int, rounds: int) -> list[Result]:
    app = web.Application()
    add_metrics_route(app, metrics.registry)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    url = f"http://127.0.0.1:{port}/metrics"
    variants = {
        "OpenMetrics + gzip (as Prometheus)": {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"},
        "classic text, no gzip": {"Accept": "text/plain", "Accept-Encoding": "identity"},
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    render: list[float] = []
    sizes: dict[str, int] = {}
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for _ in range(rounds):
                for name, headers in variants.items():
                    for _ in range(number):
                        t0 = time.perf_counter()
                        async with session.get(url, headers=headers) as resp:
                            body = await resp.read()
                            resp.raise_for_status()
                        times[name].append(time.perf_counter() - t0)
                        sizes[name] = len(body)
                t0 = time.perf_counter()
                for _ in range(number):
                    text = generate_latest(metrics.registry)
                render.append((time.perf_counter() - t0) / number)
    finally:
        await runner.cleanup()
    base = statistics.median(render)
    series = sum(1 for line in text.decode().splitlines() if line and not line.startswith("#"))
    return [
        Result(
            "scrape",
            f"GET /metrics, {name}",
            statistics.median(t),
            "s",
            "generate_latest (render only)",
            base,
            budget_abs=BUDGET_S,
            note=f"{CACHES} caches, {COMPONENTS} components, {series} series",
            extra={"body_bytes": sizes[name], "p95_s": _p95(t), "series": series},
        )
        for name, t in times.items()
    ]


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def run(quick: bool) -> list[Result]:
    metrics = populated_metrics()
    return run_async(_scrape_times(metrics, 10 if quick else 40, 3 if quick else 7))  # type: ignore[no-any-return]
