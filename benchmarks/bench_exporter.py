"""A turn while the OTLP endpoint is unreachable, against a turn exporting nowhere.

    python -m benchmarks.run --only exporter

Both are ``coda_lite.service.app.build_app`` with the same backends (text in, real embedding model,
echo LLM, no TTS: the shortest real turn, so any stall shows). One is built with
``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:<closed port>`` (OTLP http/protobuf, every
export refused), the other with ``OTEL_TRACES_EXPORTER=none``. ``OTEL_BSP_SCHEDULE_DELAY=200``
for both makes the batch processor try (and fail) to export several times a second during the
run instead of every 5 s. Caches never hit, so both turns do the same work. Budget 1.02x.
"""

from __future__ import annotations

import logging
import socket
import statistics

from benchmarks.common import Result, run_async
from benchmarks.pipelines import NO_CACHE_HITS, alternate_turns, bench_config, bench_home, otel_env
from coda_lite.service.app import build_app


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(rounds: int) -> list[Result]:
    port = closed_port()
    quiet = logging.getLogger("opentelemetry")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # one refused-connection warning per export attempt
    try:
        with bench_home() as home:
            with otel_env(
                OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
                OTEL_BSP_SCHEDULE_DELAY="200",
            ):
                dead = build_app(bench_config(home / "dead", **NO_CACHE_HITS))
            with otel_env(OTEL_TRACES_EXPORTER="none", OTEL_BSP_SCHEDULE_DELAY="200"):
                none = build_app(bench_config(home / "none", **NO_CACHE_HITS))
            try:
                t_dead, t_none = await alternate_turns(
                    dead.pipeline.manager, none.pipeline.manager, rounds=rounds
                )
                stats = dead.telemetry.stats
            finally:
                for app in (dead, none):
                    await app.aclose()
    finally:
        quiet.setLevel(level)
    extra: dict[str, object] = {"exporter": dead.telemetry.exporter_description}
    if stats is not None:
        extra.update(ended=stats.ended, exported=stats.exported, dropped=stats.dropped)
    return [
        Result(
            "exporter",
            "turn, OTLP endpoint unreachable",
            statistics.median(t_dead),
            "s",
            "turn, OTEL_TRACES_EXPORTER=none",
            statistics.median(t_none),
            budget_ratio=1.02,
            note=f"text in, no TTS; BSP delay 200 ms; {len(t_dead)} turns each, median",
            extra=extra,
        ),
    ]


def run(quick: bool) -> list[Result]:
    return run_async(_measure(3 if quick else 30))  # type: ignore[no-any-return]
