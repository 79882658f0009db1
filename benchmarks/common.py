"""Shared pieces for the benchmarks: a result row and interleaved timing.

Every figure is measured beside its baseline in the same run, alternating the two so that a
noisy neighbour on a shared machine hits both alike::

    cand, base = interleaved(lambda: instrumented(), lambda: bare(), number=10_000, rounds=7)
    Result("stage", "debugger stage", cand, "s", "bare SDK span", base, budget_ratio=1.5)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any


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
