"""A whole turn with the real backends: instrumented (``build_app``) against uninstrumented.

    python -m benchmarks.run --only turn

Text in, the real embedding model (all-MiniLM-L6-v2) for memory, the echo LLM, espeak-ng for
speech (``none`` when espeak-ng is missing, said in the note). Uninstrumented is
``build_pipeline`` with the NullObserver. Instrumented is
``coda_lite.service.app.build_app``: tracing (the default OTLP JSON file exporter), Prometheus
metrics, conversation logs, snapshots every 10 memory operations, the debug hub, and the caches
with their debugger. Rows:

* caches that never hit (TTL ~0, no LLM cache), so both do the same work: the cost of
  observing; budget 1.02x;
* the same without saving conversation logs (``debugger.save_logs = False``), to show what
  the log writer's background work costs the turns that follow;
* the app as shipped, where the repeated turn hits the embedding and LLM caches (no budget).

The same text every turn; blocks of back-to-back turns alternate between the variants (see
:func:`benchmarks.pipelines.alternate_turns`), so background work is charged to its own
variant; medians.
"""

from __future__ import annotations

import shutil
import statistics

from benchmarks.common import Result, run_async
from benchmarks.pipelines import NO_CACHE_HITS, alternate_turns, bench_config, bench_home, otel_env
from coda_lite.pipeline.build import build_pipeline
from coda_lite.service.app import build_app


async def _measure(rounds: int) -> list[Result]:
    tts = "espeak-ng" if shutil.which("espeak-ng") else "none"
    with bench_home() as home:
        bare = build_pipeline(bench_config(home / "bare", tts=tts))
        with otel_env():
            observed = build_app(bench_config(home / "observed", tts=tts, **NO_CACHE_HITS))
            no_logs = build_app(bench_config(home / "no_logs", tts=tts, **NO_CACHE_HITS))
            shipped = build_app(bench_config(home / "shipped", tts=tts))
        no_logs.debugger.save_logs = False
        apps = (observed, no_logs, shipped)
        try:
            t_bare, t_obs, t_nolog, t_ship = await alternate_turns(
                bare.manager, *(app.pipeline.manager for app in apps), rounds=rounds
            )
        finally:
            for app in apps:
                await app.aclose()
            await bare.aclose()
    note = f"text in, MiniLM, echo LLM, TTS {tts}; {len(t_obs)} turns each, median"
    base = statistics.median(t_bare)
    name = "uninstrumented (NullObserver)"
    return [
        Result(
            "turn",
            "instrumented turn (build_app, caches never hit)",
            statistics.median(t_obs),
            "s",
            name,
            base,
            budget_ratio=1.02,
            note=note,
            extra={"p90": _p90(t_obs), "baseline_p90": _p90(t_bare)},
        ),
        Result(
            "turn",
            "same, conversation logs not saved",
            statistics.median(t_nolog),
            "s",
            name,
            base,
            note=note,
        ),
        Result(
            "turn",
            "instrumented turn (build_app as shipped, cache hits)",
            statistics.median(t_ship),
            "s",
            name,
            base,
            note=note,
        ),
    ]


def _p90(values: list[float]) -> float:
    return sorted(values)[int(0.9 * (len(values) - 1))]


def run(quick: bool) -> list[Result]:
    return run_async(_measure(3 if quick else 16))  # type: ignore[no-any-return]
