"""Cache observation cost: ``record_cache_access`` against a bare counter increment, and a
:class:`~coda_otel.cache.embedder.CachedEmbedder` hit against a real model encode.

    python -m benchmarks.run --only cache

Rows: a recorded hit and a recorded miss (budget 2x a pre-bound ``Counter.inc()``); a
``CachedEmbedder.encode`` hit and an ``embed_text`` hit against the real all-MiniLM-L6-v2
encode of the same text (the ratio is the speed-up; budget: a hit within 10 us).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter

from benchmarks.common import (
    Result,
    cpu_time_per_call,
    interleaved,
    interleaved_async,
    run_async,
)
from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.embedder import CachedEmbedder
from coda_otel.metrics import CodaMetrics

TEXT = "My name is Ada and I live in Lisbon."
HIT_BUDGET_S = 10e-6  #: a cache hit (sync or async) within 10 us


def _record(quick: bool) -> list[Result]:
    metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
    debugger = CacheDebugger(metrics=metrics)
    debugger.register_cache("embedding", maxsize=1024, ttl=3600.0)
    debugger.record_load("embedding", 0.031)  # hits are credited with a measured load cost
    bare = Counter("bench_bare", "baseline", ["cache", "result"], registry=CollectorRegistry())
    child = bare.labels(cache="embedding", result="hit")
    key = "model:0123abcd"
    number = 20_000 if quick else 100_000
    rounds = 3 if quick else 7

    def hit() -> None:
        debugger.record_cache_access("embedding", key, True)

    def miss() -> None:
        debugger.record_cache_access("embedding", key, False)

    rows = []
    for name, fn in (("record_cache_access (hit)", hit), ("record_cache_access (miss)", miss)):
        cand, base = interleaved(fn, child.inc, number=number, rounds=rounds)
        rows.append(Result("cache", name, cand, "s", "bare Counter.inc()", base, budget_ratio=2.0))
    return rows


def _embedder(quick: bool) -> list[Result]:
    from coda_lite.config import EmbeddingsConfig
    from coda_lite.memory.embedder import make_embedder

    model = make_embedder(EmbeddingsConfig())
    if type(model).__name__ != "SentenceTransformerEmbedder":
        return [Result("cache", "CachedEmbedder hit", 0.0, "s", note="no real model installed")]
    metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
    cached = CachedEmbedder(model, debugger=CacheDebugger(metrics=metrics))
    cached.encode([TEXT])  # the miss: now cached
    # Thousands of hits per round: a few dozen, timed right after the model has run, measured
    # cold caches (the model's work evicts them), not the hit.
    number = 2_000 if quick else 10_000
    model_number = 5 if quick else 10
    rounds = 3 if quick else 5

    def hit() -> None:
        cached.encode([TEXT])

    def encode() -> None:
        model.encode([TEXT])

    async def async_hit() -> None:
        await cached.embed_text(TEXT)

    async def async_encode() -> None:
        model.encode([TEXT])

    enc_hit, enc_model = interleaved(
        hit, encode, number=number, rounds=rounds, baseline_number=model_number
    )
    async_hit_s, async_model = run_async(
        interleaved_async(
            async_hit, async_encode, number=number, rounds=rounds, baseline_number=model_number
        )
    )

    def async_hits() -> None:
        run_async(_repeat(async_hit, number))

    enc_cpu = cpu_time_per_call(hit, number, rounds)
    async_cpu = cpu_time_per_call(async_hits, 1, rounds) / number
    note = "ratio = hit / real encode (lower is better); budget: a hit within 10 us"
    cpu_note = "CPU time of the calling thread: what a hit costs, whatever the machine's load"
    return [
        Result(
            "cache",
            "CachedEmbedder.encode hit",
            enc_hit,
            "s",
            "model encode (1 text)",
            enc_model,
            budget_abs=HIT_BUDGET_S,
            note=note,
        ),
        Result(
            "cache",
            "CachedEmbedder.embed_text hit",
            async_hit_s,
            "s",
            "model encode (1 text)",
            async_model,
            budget_abs=HIT_BUDGET_S,
            note=note,
        ),
        Result(
            "cache",
            "CachedEmbedder.encode hit, CPU time",
            enc_cpu,
            "s",
            budget_abs=HIT_BUDGET_S,
            note=cpu_note,
        ),
        Result(
            "cache",
            "CachedEmbedder.embed_text hit, CPU time",
            async_cpu,
            "s",
            budget_abs=HIT_BUDGET_S,
            note=cpu_note + " (one event loop per round)",
        ),
    ]


async def _repeat(fn: Callable[[], Awaitable[object]], number: int) -> None:
    for _ in range(number):
        await fn()


def run(quick: bool) -> list[Result]:
    return _record(quick) + _embedder(quick)
