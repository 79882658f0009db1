"""Shared pieces for the benchmarks: a result row and interleaved timing.

Every figure is measured beside its baseline in the same run, alternating the two so that a
noisy neighbour on a shared machine hits both alike::

    cand, base = interleaved(lambda: instrumented(), lambda: bare(), number=10_000, rounds=7)
    Result("stage", "debugger stage", cand, "s", "bare SDK span", base, budget_ratio=1.5)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coda_otel.testing import free_port


@dataclass
class Result:
    """One row: a measured value, its same-run baseline, and the budget it is held to."""

    group: str
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    budget_ratio: float | None = None  # value / baseline must be <= this
    budget_abs: float | None = None  # value must be <= this (in `unit`)
    budget_min_ratio: float | None = None  # value / baseline must be >= this
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    @property
    def ok(self) -> bool | None:
        checks: list[bool] = []
        if self.budget_ratio is not None and self.ratio is not None:
            checks.append(self.ratio <= self.budget_ratio)
        if self.budget_abs is not None:
            checks.append(self.value <= self.budget_abs)
        if self.budget_min_ratio is not None and self.ratio is not None:
            checks.append(self.ratio >= self.budget_min_ratio)
        return all(checks) if checks else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["ok"] = self.ok
        return d


def time_per_call(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def cpu_time_per_call(fn: Callable[[], Any], number: int, rounds: int = 5) -> float:
    """Median CPU seconds of this thread per call of ``fn``: unlike wall time, other processes
    on a loaded machine do not count (only their effect on caches does)."""
    times = []
    for _ in range(rounds):
        t0 = time.thread_time()
        for _ in range(number):
            fn()
        times.append((time.thread_time() - t0) / number)
    return statistics.median(times)


def interleaved(
    candidate: Callable[[], Any],
    baseline: Callable[[], Any],
    *,
    number: int,
    rounds: int = 7,
    baseline_number: int | None = None,
) -> tuple[float, float]:
    """Median seconds per call of candidate and baseline, measured in alternating rounds.

    ``baseline_number`` (default ``number``) calls of a much slower baseline per round."""
    base_number = number if baseline_number is None else baseline_number
    time_per_call(candidate, max(1, number // 10))  # warm up
    time_per_call(baseline, max(1, base_number // 10))
    cand: list[float] = []
    base: list[float] = []
    for _ in range(rounds):
        cand.append(time_per_call(candidate, number))
        base.append(time_per_call(baseline, base_number))
    return statistics.median(cand), statistics.median(base)


async def async_time_per_call(fn: Callable[[], Awaitable[Any]], number: int) -> float:
    """Seconds per ``await fn()`` over ``number`` awaits, on the running loop."""
    t0 = time.perf_counter()
    for _ in range(number):
        await fn()
    return (time.perf_counter() - t0) / number


async def interleaved_async(
    candidate: Callable[[], Awaitable[Any]],
    baseline: Callable[[], Awaitable[Any]],
    *,
    number: int,
    rounds: int = 7,
    baseline_number: int | None = None,
) -> tuple[float, float]:
    """:func:`interleaved` for coroutine functions (awaited back to back on one loop)."""
    base_number = number if baseline_number is None else baseline_number
    await async_time_per_call(candidate, max(1, number // 10))
    await async_time_per_call(baseline, max(1, base_number // 10))
    cand: list[float] = []
    base: list[float] = []
    for _ in range(rounds):
        cand.append(await async_time_per_call(candidate, number))
        base.append(await async_time_per_call(baseline, base_number))
    return statistics.median(cand), statistics.median(base)


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


@contextmanager
def served(
    home: Path, config: str, env: Mapping[str, str] | None = None, *, ready_s: float = 180
) -> Iterator[str]:
    """A real ``coda-lite serve`` with ``CODA_HOME=home`` and ``config`` (YAML); yields its
    base URL once ``/health/ready`` says 200. No traces exported; ``env`` adds variables."""
    (home / "config.yaml").write_text(config)
    port = free_port()
    full = {**os.environ, "CODA_HOME": str(home), "CODA_CONFIG": str(home / "config.yaml"),
            "OTEL_TRACES_EXPORTER": "none", "HF_HUB_OFFLINE": "1", **(env or {})}  # fmt: skip
    full.pop("CODA_DEBUG_TOKEN", None)
    with open(home / "serve.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "coda_lite", "serve", "--port", str(port)],
            env=full, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"coda-lite serve exited: {(home / 'serve.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"coda-lite serve did not get ready in {ready_s:.0f} s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_async(coro: Awaitable[Any]) -> Any:
    """Run ``coro`` on a fresh event loop (benchmarks are plain functions)."""

    async def main() -> Any:
        return await coro

    return asyncio.run(main())


def fmt_value(value: float, unit: str) -> str:
    """Human form: seconds as ns/us/ms, bytes as KiB/MiB."""
    if unit == "s":
        for scale, name in ((1e-6, "ns"), (1e-3, "us"), (1.0, "ms")):
            if value < scale:
                return f"{value / scale * 1e3:.2f} {name}"
        return f"{value:.3f} s"
    if unit == "B":
        if value >= 2**20:
            return f"{value / 2**20:.2f} MiB"
        if value >= 2**10:
            return f"{value / 2**10:.1f} KiB"
        return f"{value:.0f} B"
    return f"{value:.3g} {unit}"
