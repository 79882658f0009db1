"""Resident memory growth over 1,000 instrumented turns, beside the uninstrumented pipeline's.

    python -m benchmarks.run --only memory_growth

The cheapest real turn (text in, real embedding model, echo LLM, no TTS), a different question
every turn (so the embedding and LLM caches fill up to their bounds, as in real use), through
``coda_lite.service.app.build_app`` with every tool attached (tracing to the default file exporter,
metrics, conversation logs, snapshots, caches, debug hub). RSS (psutil) is read after a
warm-up and after the 1,000 turns, each time after ``gc.collect()``; the uninstrumented
pipeline (``build_pipeline``, NullObserver) runs the same turns first as the baseline, after
300 unmeasured turns that let the model's allocator caches settle.
Budget: under 20 MiB growth.
"""

from __future__ import annotations

import gc
from typing import Any

import psutil

from benchmarks.common import Result, run_async
from benchmarks.pipelines import bench_config, bench_home, otel_env
from coda_lite.pipeline.build import build_pipeline
from coda_lite.service.app import build_app

BUDGET_B = 20 * 2**20
WARMUP = 50
#: Turns the process runs first, unmeasured: the model's own allocator caches (torch,
#: tokenizers) grow over the first few hundred distinct inputs whoever observes them.
PROCESS_WARMUP = 300


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def _growth(manager: Any, turns: int) -> tuple[int, int]:
    """(RSS growth in bytes over ``turns`` turns after the warm-up, RSS after warm-up)."""
    for i in range(WARMUP):
        await manager.process_user_input(f"What is the weather like in warm-up town {i}?")
    before = _rss()
    for i in range(turns):
        await manager.process_user_input(f"What is the weather like in town number {i}?")
    return _rss() - before, before


async def _measure(turns: int) -> list[Result]:
    with bench_home() as home:
        bare = build_pipeline(bench_config(home / "bare"))
        try:
            for i in range(PROCESS_WARMUP if turns >= 1000 else WARMUP):
                await bare.manager.process_user_input(f"How warm was it in first town {i}?")
            base, _ = await _growth(bare.manager, turns)
        finally:
            await bare.aclose()
        with otel_env():
            app = build_app(bench_config(home / "app"))
        try:
            grown, start = await _growth(app.pipeline.manager, turns)
        finally:
            await app.aclose()
    return [
        Result(
            "memory",
            f"RSS growth over {turns} instrumented turns",
            grown,
            "B",
            f"uninstrumented, same {turns} turns",
            base,
            budget_abs=BUDGET_B,
            note="text in, no TTS, a new question each turn; after a 50-turn warm-up",
            extra={"rss_after_warmup": start},
        ),
    ]


def run(quick: bool) -> list[Result]:
    return run_async(_measure(100 if quick else 1000))  # type: ignore[no-any-return]
