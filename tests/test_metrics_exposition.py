"""GET /metrics on a real aiohttp server: formats, exemplars, gzip, promtool."""

from __future__ import annotations

import gzip
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.events import ConversationEvent, StageEvent
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline.metrics_listener import PipelineMetrics
from coda_otel.web.metrics_route import add_metrics_route, wants_gzip
from tests.support import free_port, require_tool

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _stage(stage: str, duration: float, **kw: object) -> StageEvent:
    fields: dict[str, object] = {
        "conversation_id": "c1",
        "session_id": "s1",
        "turn": 1,
        "stage": stage,
        "status": "ok",
        "started_at": 0.0,
        "duration_s": duration,
        "input_size": 1,
        "output_size": 1,
        "trace_id": TRACE_ID,
    }
    fields.update(kw)
    return StageEvent(**fields)  # type: ignore[arg-type]


@pytest.fixture
def metrics() -> CodaMetrics:
    m = CodaMetrics()
    pm = PipelineMetrics(m)
    for stage, d in [("stt", 0.3), ("memory_retrieval", 0.02), ("llm", 1.7), ("tts", 0.4)]:
        pm.on_stage_end(_stage(stage, d))
    pm.on_stage_end(_stage("llm", 0.1, status="error", error_type="TimeoutError"))
    pm.on_conversation_end(
        ConversationEvent("c1", "s1", 1, "ok", 0.0, 2.5, trace_id=TRACE_ID, span_id="a" * 16)
    )
    debugger = CacheDebugger(metrics=m)
    cache: ObservedTTLCache[str, str] = ObservedTTLCache(
        2, 60.0, name="llm_response", debugger=debugger
    )
    # LRU, maxsize 2: a miss, b miss, a hit, c miss (evicts b), a hit
    for q in ["a", "b", "a", "c", "a"]:
        cache.get_or_compute(q, lambda q=q: q.upper())
    return m


@pytest.fixture
async def base_url(metrics: CodaMetrics) -> AsyncIterator[str]:
    app = web.Application()
    add_metrics_route(app, metrics.registry)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _get(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """GET without aiohttp's default ``Accept-Encoding: gzip``; raw (undecoded) body."""
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    async with aiohttp.ClientSession(auto_decompress=False) as s, s.get(url, headers=sent) as r:
        return r.status, dict(r.headers), await r.read()


async def test_classic_text_passes_promtool(base_url: str) -> None:
    promtool = require_tool("promtool")
    status, headers, body = await _get(f"{base_url}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b""


async def test_counters_and_histograms_move(base_url: str) -> None:
    _, _, body = await _get(f"{base_url}/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body.decode())
        for s in fam.samples
    }
    assert samples[("coda_pipeline_stage_duration_seconds_count", (("stage", "llm"),))] == 2
    assert samples[("coda_pipeline_stage_duration_seconds_sum", (("stage", "llm"),))] == (
        pytest.approx(1.8)
    )
    assert samples[("coda_conversations_total", (("status", "ok"),))] == 1
    errors = (
        "coda_pipeline_stage_errors_total",
        (("error_type", "TimeoutError"), ("stage", "llm")),
    )
    assert samples[errors] == 1
    req = "coda_cache_requests_total"
    assert samples[(req, (("cache", "llm_response"), ("result", "hit")))] == 2
    assert samples[(req, (("cache", "llm_response"), ("result", "miss")))] == 3
    evict = (("cache", "llm_response"), ("reason", "size"))
    assert samples[("coda_cache_evictions_total", evict)] == 1
    assert samples[("coda_cache_entries", (("cache", "llm_response"),))] == 2
    assert samples[("coda_cache_load_duration_seconds_count", (("cache", "llm_response"),))] == 3


async def test_openmetrics_carries_trace_exemplar(base_url: str) -> None:
    accept = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    status, headers, body = await _get(f"{base_url}/metrics", {"Accept": accept})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    text = body.decode()
    assert text.rstrip().endswith("# EOF")
    lines = [
        ln
        for ln in text.splitlines()
        if ln.startswith('coda_pipeline_stage_duration_seconds_bucket{le="2.5",stage="llm"}')
    ]
    assert lines and f'# {{trace_id="{TRACE_ID}"}} 1.7' in lines[0]


async def test_gzip_when_asked_and_only_then(base_url: str) -> None:
    _, plain_headers, plain = await _get(f"{base_url}/metrics", {"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain_headers
    _, headers, body = await _get(f"{base_url}/metrics", {"Accept-Encoding": "br, gzip;q=0.8"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"coda_cache_requests_total" in gzip.decompress(body)
    _, refused, _ = await _get(f"{base_url}/metrics", {"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused
    assert b"coda_cache_requests_total" in plain


async def test_name_filter_restricts_families(base_url: str) -> None:
    url = f"{base_url}/metrics?name[]=coda_conversations_total"
    _, _, body = await _get(url, {"Accept-Encoding": "identity"})
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert names == {"coda_conversations"}


def test_wants_gzip_parsing() -> None:
    assert wants_gzip("gzip")
    assert wants_gzip("deflate, GZIP;q=0.5")
    assert wants_gzip("*")
    assert not wants_gzip("")
    assert not wants_gzip("gzip;q=0")
    assert not wants_gzip("gzip;q=bogus")
    assert not wants_gzip("br, deflate")
