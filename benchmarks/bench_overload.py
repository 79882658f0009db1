"""More sessions than the model can serve, on a real ``coda-lite serve`` with the real model.

    python -m benchmarks.run --only overload            # 2 minutes per load level
    python -m benchmarks.run --only overload --quick    # 20 seconds per level

One service (SmolLM2-135M-Instruct in process, greedy, 64 tokens at most; espeak-ng speaking
when installed; no LLM response cache; the default admission control: 2 turns running, 32
waiting, 20 s wait) takes N = 1, 4, 8 and 16 concurrent sessions in turn. Each session sends a
text turn, waits for the answer and sends the next; a 503 ``overloaded`` answer is a shed turn,
and the session waits what ``Retry-After`` says before trying again, as a well-behaved client
does. Meanwhile ``/health/live`` and ``/metrics`` are probed every 200 ms. When the level's
time is up the sessions stop sending, and ``/health/ready`` is polled until it says 200 again.

Rows, per level: goodput (answered turns per second), voice-to-voice latency of the answered
turns (the service's own figure, from the end of the input to the first answer audio, queueing
included) p50 and p95, the share of turns shed, ``/health/live`` and ``/metrics`` p99 (budget
250 ms each), turns that failed other than by being shed (budget 0), and seconds until ready
after the load stops (budget 10 s). Then goodput at N=16 against N=4 (budget: at least 0.9x,
no collapse under overload). Skipped (one row says why) when the local model is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.common import Result, p99, run_async, served
from benchmarks.pipelines import bench_home, local_model_env
from coda_lite.config import LlmConfig
from coda_lite.llm.local import local_model_problem

LEVELS = (1, 4, 8, 16)
PROBE_EVERY_S = 0.2
PROBE_BUDGET_S = 0.250
READY_BUDGET_S = 10.0
#: What the sessions say, in turn: facts told and asked back, and small talk.
PROMPTS = (
    "My name is Ada and I live in Lisbon.",
    "What is my name?",
    "I like green tea in the morning.",
    "Where do I live?",
    "Tell me a fun fact about the moon.",
    "What do I like to drink?",
    "Give me one tip for sleeping well.",
    "Say hello in French.",
)


@dataclass
class Level:
    """What one load level saw."""

    sessions: int
    seconds: float
    answered: int = 0
    shed: int = 0
    failed: list[str] = field(default_factory=list)
    voice_to_voice_s: list[float] = field(default_factory=list)
    live_s: list[float] = field(default_factory=list)
    metrics_s: list[float] = field(default_factory=list)
    ready_after_s: float = float("nan")


async def _session(
    http: aiohttp.ClientSession, base: str, level: Level, i: int, stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        text = PROMPTS[(i + n) % len(PROMPTS)]
        n += 1
        body = {"text": text, "session_id": f"load{level.sessions}-{i}"}
        try:
            async with http.post(f"{base}/v1/turns", json=body) as resp:
                doc = await resp.json(content_type=None)
                retry = resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            level.failed.append(type(exc).__name__)
            continue
        code = (doc.get("error") or {}).get("code") if isinstance(doc, dict) else None
        if resp.status == 200:
            if stop.is_set():
                break  # finished after the level's time: not part of its goodput
            level.answered += 1
            latency = doc.get("latency") or {}
            if latency.get("voice_to_voice_us") is not None:
                level.voice_to_voice_s.append(latency["voice_to_voice_us"] / 1e6)
        elif resp.status == 503 and code == "overloaded":
            level.shed += 1
            with contextlib.suppress(TimeoutError):  # back off as told, unless time is up
                await asyncio.wait_for(stop.wait(), float(retry or 1))
        else:
            level.failed.append(f"{resp.status} {code}")


async def _probe(
    http: aiohttp.ClientSession, url: str, into: list[float], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        async with http.get(url) as resp:
            await resp.read()
        into.append(time.perf_counter() - t0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PROBE_EVERY_S)


async def _until_ready(http: aiohttp.ClientSession, base: str, limit_s: float = 120) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_s:
        async with http.get(f"{base}/health/ready") as resp:
            if resp.status == 200:
                return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return float("inf")


async def _level(http: aiohttp.ClientSession, base: str, sessions: int, seconds: float) -> Level:
    level = Level(sessions, seconds)
    stop_load, stop_probes = asyncio.Event(), asyncio.Event()
    probes = [
        asyncio.create_task(_probe(http, f"{base}/health/live", level.live_s, stop_probes)),
        asyncio.create_task(_probe(http, f"{base}/metrics", level.metrics_s, stop_probes)),
    ]
    load = [asyncio.create_task(_session(http, base, level, i, stop_load)) for i in range(sessions)]
    await asyncio.sleep(seconds)
    stop_load.set()
    level.ready_after_s = await _until_ready(http, base)
    stop_probes.set()
    await asyncio.gather(*load, *probes)
    return level


def _rows(level: Level) -> list[Result]:
    n, v2v = level.sessions, sorted(level.voice_to_voice_s)
    tried = level.answered + level.shed + len(level.failed)
    note = (f"{level.answered} answered, {level.shed} shed, {len(level.failed)} failed "
            f"in {level.seconds:.0f} s")  # fmt: skip
    rows = [
        Result("overload", f"goodput, {n} sessions", level.answered / level.seconds, "turns/s",
               note=note),
        Result("overload", f"shed turns, {n} sessions", 100 * level.shed / max(tried, 1), "%",
               note=note),
        Result("overload", f"GET /health/live p99, {n} sessions", p99(level.live_s), "s",
               budget_abs=PROBE_BUDGET_S, note=f"{len(level.live_s)} probes"),
        Result("overload", f"GET /metrics p99, {n} sessions", p99(level.metrics_s), "s",
               budget_abs=PROBE_BUDGET_S, note=f"{len(level.metrics_s)} scrapes"),
        Result("overload", f"turns failed other than shed, {n} sessions", len(level.failed),
               "turns", budget_abs=0, note=", ".join(sorted(set(level.failed)))[:200]),
        Result("overload", f"ready after the load stops, {n} sessions", level.ready_after_s,
               "s", budget_abs=READY_BUDGET_S),
    ]  # fmt: skip
    if v2v:
        p95 = v2v[min(len(v2v) - 1, int(0.95 * len(v2v)))]
        rows[1:1] = [
            Result("overload", f"voice-to-voice p50, {n} sessions", statistics.median(v2v), "s",
                   note="answered turns, queueing included"),
            Result("overload", f"voice-to-voice p95, {n} sessions", p95, "s",
                   note="answered turns, queueing included"),
        ]  # fmt: skip
    return rows


async def _measure(base: str, seconds: float) -> list[Result]:
    timeout = aiohttp.ClientTimeout(total=180)
    connector = aiohttp.TCPConnector(limit=max(LEVELS) + 8)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        async with http.post(f"{base}/v1/turns", json={"text": "Hello."}) as resp:
            resp.raise_for_status()  # the model is loaded and warm before the first level
        levels = [await _level(http, base, n, seconds) for n in LEVELS]
    rows = [row for level in levels for row in _rows(level)]
    by_n = {level.sessions: level.answered / level.seconds for level in levels}
    rows.append(
        Result("overload", "goodput, 16 sessions", by_n[16], "turns/s",
               "goodput, 4 sessions", by_n[4], budget_min_ratio=0.9,
               note="no collapse: more sessions than slots must not cost throughput")
    )  # fmt: skip
    return rows


def run(quick: bool) -> list[Result]:
    problem = local_model_problem(LlmConfig(backend="local"))
    if problem is not None:
        return [Result("overload", f"skipped: {problem}", 0, "-")]
    tts = "espeak-ng" if shutil.which("espeak-ng") else "none"
    # no LLM response cache: every turn is a real generation, as distinct users' turns are
    config = f"tts:\n  backend: {tts}\ntelemetry:\n  health_interval: 1.0\n  llm_cache_size: 0\n"
    with bench_home() as home, served(Path(home), config, local_model_env()) as base:
        return run_async(_measure(base, 20.0 if quick else 120.0))  # type: ignore[no-any-return]
