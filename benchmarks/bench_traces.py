"""The local trace store: searching 10,000 stored turns, and what keeping them costs a turn.

    python -m benchmarks.run --only traces

* Search: a :class:`TraceStore` filled with 10,000 turns (a root and five stage spans each,
  attributes as the pipeline sets them), served by ``add_trace_routes`` on a real aiohttp
  server; each row is the median time of ``GET /debug/traces?...`` over HTTP, JSON included,
  with the console's limit (100). Budget 100 ms.
* Turn: ``build_app`` with the store (the default, 1000 turns) against ``build_app`` with
  ``telemetry.trace_store_turns: 0``; both export nowhere (``OTEL_TRACES_EXPORTER=none``), so
  the store is the only difference. Text in, real embedding model, echo LLM, no TTS; caches never
  hit; turns interleaved in blocks. Budget 1.02x. On a loaded 2-core machine this ratio
  swings by several percent from run to run, so the store's own work per turn (on its thread,
  batched as the processor batches it) is also measured against the same turn: budget 0.02x.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from benchmarks.common import Result, run_async
from benchmarks.pipelines import NO_CACHE_HITS, alternate_turns, bench_config, bench_home, otel_env
from coda_lite.service.app import build_app
from coda_otel.console import add_trace_routes
from coda_otel.testing import serving
from coda_otel.tracing.store import TraceStore

STORED = 10_000
STAGES = ("stt", "memory_retrieval", "llm", "memory_update", "tts")
QUERIES = {
    "newest 100": "limit=100",
    "one session": "session_id=session-17&limit=100",
    "status=error (rare)": "status=error&limit=100",
    "min_duration_ms=1900": "min_duration_ms=1900&limit=100",
}


def _turn(n: int, t0: int) -> list[dict[str, Any]]:
    """The span records of one turn, shaped like the pipeline debugger's."""
    trace_id, root_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    start = t0 + n * 2_000_000_000
    status = "error" if n % 97 == 0 else "ok"
    spans, at = [], start
    for i, name in enumerate(STAGES):
        ms = 5.0 + (n * 7 + i * 13) % 400
        end = at + int(ms * 1e6)
        spans.append({
            "trace_id": trace_id, "span_id": uuid.uuid4().hex[:16], "parent_span_id": root_id,
            "name": name, "kind": "INTERNAL", "start_unix_nano": at, "end_unix_nano": end,
            "duration_ms": ms, "status": {"code": "UNSET", "message": None},
            "attributes": {"coda.stage": name, "coda.input.size": 42, "coda.output.size": 42,
                           "gen_ai.conversation.id": f"session-{n % 50}",
                           "coda.stage.status": "ok"},
            "events": [], "links": [],
        })  # fmt: skip
        at = end
    spans.insert(0, {
        "trace_id": trace_id, "span_id": root_id, "parent_span_id": None,
        "name": "conversation", "kind": "INTERNAL", "start_unix_nano": start,
        "end_unix_nano": at, "duration_ms": (at - start) / 1e6,
        "status": {"code": "ERROR" if status == "error" else "UNSET", "message": None},
        "attributes": {"coda.conversation.id": uuid.uuid4().hex, "coda.turn": n,
                       "session.id": f"session-{n % 50}", "coda.conversation.status": status,
                       "coda.latency.voice_to_voice": (at - start) / 1e9,
                       "coda.turn.end_reason": "completed" if status == "ok" else "error"},
        "events": [], "links": [],
    })  # fmt: skip
    return spans


def fill(path: Path, turns: int) -> TraceStore:
    store = TraceStore(path, max_turns=turns, max_bytes=2**30)
    t0 = time.time_ns() - turns * 2_000_000_000
    batch: list[dict[str, Any]] = []
    for n in range(turns):
        batch.extend(_turn(n, t0))
        if len(batch) >= 600:
            store.add(batch)
            batch = []
    store.add(batch)
    return store


async def _search(rounds: int) -> list[Result]:
    with bench_home() as home:
        store = fill(home / "turns.sqlite3", STORED)
        app = web.Application()
        add_trace_routes(app, store)
        results = []
        try:
            async with serving(app) as base, aiohttp.ClientSession() as session:
                for label, query in QUERIES.items():
                    url = f"{base}/debug/traces?{query}"
                    times, found = [], 0
                    for _ in range(rounds):
                        t = time.perf_counter()
                        async with session.get(url) as resp:
                            found = len((await resp.json())["traces"])
                        times.append(time.perf_counter() - t)
                    results.append(
                        Result(
                            "traces", f"search {STORED:,} turns: {label}",
                            statistics.median(times), "s", budget_abs=0.1,
                            note=f"HTTP + JSON, {found} rows, median of {rounds}",
                            extra={"max_s": max(times), "rows": found},
                        )
                    )  # fmt: skip
        finally:
            store.close()
    return results


def store_write_per_turn(folder: Path, turns: int = 1200, batch: int = 12) -> float:
    """Seconds the store's thread spends per turn (SQLite insert, JSON, bounds), batched as the
    processor batches them (~12 turns of ~40 ms in its 0.5 s)."""
    store = TraceStore(folder / "write.sqlite3", max_turns=1000)
    made = [_turn(n, time.time_ns()) for n in range(turns)]
    try:
        t = time.perf_counter()
        for i in range(0, turns, batch):
            store.add([r for turn in made[i : i + batch] for r in turn])
        return (time.perf_counter() - t) / turns
    finally:
        store.close()


async def _turn_cost(rounds: int) -> list[Result]:
    with bench_home() as home, otel_env(OTEL_TRACES_EXPORTER="none"):
        kept = build_app(bench_config(home / "store", **NO_CACHE_HITS))
        off = build_app(
            bench_config(home / "off", CODA_TELEMETRY_TRACE_STORE_TURNS="0", **NO_CACHE_HITS)
        )
        try:
            t_kept, t_off = await alternate_turns(
                kept.pipeline.manager, off.pipeline.manager, rounds=rounds
            )
            stored = len(kept.trace_store) if kept.trace_store is not None else 0
        finally:
            for app in (kept, off):
                await app.aclose()
        write = store_write_per_turn(home)
    return [
        Result(
            "traces", "trace store write per turn (its own thread)", write, "s",
            "turn, trace_store_turns: 0", statistics.median(t_off), budget_ratio=0.02,
            note="batches of 12 turns, 1000 kept (evicting): CPU the store takes per turn",
        ),
        Result(
            "traces", "turn, local trace store on", statistics.median(t_kept), "s",
            "turn, trace_store_turns: 0", statistics.median(t_off), budget_ratio=1.02,
            note=f"text in, no TTS, exporter none; {len(t_kept)} turns each, median",
            extra={"turns_stored": stored},
        )
    ]  # fmt: skip


def run(quick: bool) -> list[Result]:
    search: list[Result] = run_async(_search(5 if quick else 40))
    cost: list[Result] = run_async(_turn_cost(3 if quick else 30))
    return search + cost
