"""``/metrics`` and ``/health`` while the pipeline is saturated or stalled, on a real service.

    python -m benchmarks.run --only scrape_load

Starts a real ``coda-lite serve`` (echo LLM, the real embedding model, no TTS) on a free
127.0.0.1 port. The baseline is the scrape on the idle service. Then, while scrapes run every
50 ms, (1) 20 clients send turns back to back (the pipeline saturated), and (2) another
connection holds the memory database's write lock while 20 clients state facts (the pipeline
stalled on SQLite). Rows: scrape p99 in each phase beside the idle p99, budget 50 ms; and the
``/health/live`` p99 under saturation.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.common import Result, p99, run_async, served

CLIENTS = 20
BUDGET_S = 0.050
# The echo model, said here: the row measures scraping under load, not the model.
CONFIG = (
    "llm:\n  backend: echo\n"
    "tts:\n  backend: none\ntelemetry:\n  health_interval: 1.0\nmemory:\n  busy_timeout: 5\n"
)


async def _probe(session: aiohttp.ClientSession, url: str, seconds: float) -> list[float]:
    """GET ``url`` every 50 ms for ``seconds``; each request's wall time."""
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
            resp.raise_for_status()
        times.append(time.perf_counter() - t0)
        await asyncio.sleep(0.05)
    return times


async def _clients(
    session: aiohttp.ClientSession, base: str, facts: bool, stop: asyncio.Event
) -> int:
    counter = itertools.count()

    async def client(i: int) -> int:
        done = 0
        while not stop.is_set():
            n = next(counter)
            text = f"I like topic number {n}." if facts else f"What do I like, part {n}?"
            body = {"text": text, "session_id": f"load-{i}"}
            async with session.post(f"{base}/v1/turns", json=body) as resp:
                await resp.read()
            done += 1
        return done

    return sum(await asyncio.gather(*(client(i) for i in range(CLIENTS))))


async def _loaded(
    session: aiohttp.ClientSession, base: str, url: str, seconds: float, facts: bool
) -> tuple[list[float], int]:
    stop = asyncio.Event()
    load = asyncio.create_task(_clients(session, base, facts, stop))
    await asyncio.sleep(1.0)  # let the load build up
    times = await _probe(session, url, seconds)
    stop.set()
    return times, await load


async def _measure(base: str, db: Path, seconds: float) -> list[Result]:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=CLIENTS + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        metrics, live = f"{base}/metrics", f"{base}/health/live"
        await _probe(session, metrics, 0.5)  # warm up: first scrapes create the series
        idle = await _probe(session, metrics, seconds)
        idle_live = await _probe(session, live, seconds)
        busy, turns = await _loaded(session, base, metrics, seconds, facts=False)
        busy_live, _ = await _loaded(session, base, live, seconds, facts=False)
        holder = sqlite3.connect(db, timeout=5)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            stalled, _ = await _loaded(session, base, metrics, seconds, facts=True)
        finally:
            holder.rollback()
            holder.close()
    rate = turns / (seconds + 1.0)
    return [
        Result("scrape_load", f"GET /metrics p99, {CLIENTS} clients saturating the pipeline",
               p99(busy), "s", "idle service p99", p99(idle), budget_abs=BUDGET_S,
               note=f"{len(busy)} scrapes, ~{rate:.0f} turns/s",
               extra={"median_s": sorted(busy)[len(busy) // 2], "scrapes": len(busy)}),
        Result("scrape_load", f"GET /metrics p99, database write-locked, {CLIENTS} writers",
               p99(stalled), "s", "idle service p99", p99(idle), budget_abs=BUDGET_S,
               note=f"{len(stalled)} scrapes; turns wait for SQLite",
               extra={"median_s": sorted(stalled)[len(stalled) // 2]}),
        Result("scrape_load", f"GET /health/live p99, {CLIENTS} clients saturating",
               p99(busy_live), "s", "idle service p99", p99(idle_live), budget_abs=BUDGET_S,
               note=f"{len(busy_live)} probes"),
    ]  # fmt: skip


def run(quick: bool) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="coda-bench-") as tmp:
        home = Path(tmp)
        with served(home, CONFIG) as base:
            db = home / "data" / "memory.sqlite3"
            return run_async(_measure(base, db, 2.0 if quick else 6.0))  # type: ignore[no-any-return]
