"""Memory-leak suspicion: a least-squares trend of resident memory over a sliding window.

    from coda_otel.health.leak import LeakDetector

    detector = LeakDetector(window=60, min_samples=10, metrics=metrics)
    report = detector.sample("embedder", heartbeat.get("memory_usage"))
    if report.suspected:
        print(f"{report.component} grows {report.slope_bytes_per_s / 1024:.0f} KiB/s")

Each component keeps its own window. A sample is the component's own figure when its heartbeat
reports ``memory_usage`` (bytes), else the process's resident set size (psutil): sample the
process once, under :data:`PROCESS`, never on behalf of each component (one leak would then
flag them all). A leak is suspected when the slope over the window passes
``slope_threshold_bytes_per_s`` *and* the fit is good (r^2 >= ``min_r2``), so a one-off step
(a model load) or noise does not count. The detector warns in the log and sets
``coda_memory_leak_suspected`` and ``coda_memory_growth_bytes_per_second``; it never restarts
anything itself. ``restart_on_leak`` tells the watchdog that owns it to restart a component
whose own figure leaks.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeGuard

import psutil

from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)

Source = Literal["component", "process"]

#: The series name for the whole process's resident memory.
PROCESS = "process"

#: Default threshold: 16 KiB/s is about 1 MiB a minute, 56 MiB an hour.
DEFAULT_SLOPE_THRESHOLD = 16 * 1024.0


def process_rss() -> int:
    """Resident set size of this process, in bytes."""
    return int(psutil.Process().memory_info().rss)


def least_squares(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Slope and coefficient of determination (r^2) of the line through ``(x, y)`` points.

    A flat or single-time series has slope 0 and r^2 0 (no trend to trust).

    >>> least_squares([(0, 1.0), (1, 3.0), (2, 5.0)])
    (2.0, 1.0)
    """
    n = len(points)
    if n < 2:
        return 0.0, 0.0
    mean_x = math.fsum(p[0] for p in points) / n
    mean_y = math.fsum(p[1] for p in points) / n
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in points)
    syy = math.fsum((y - mean_y) ** 2 for _, y in points)
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in points)
    if sxx == 0.0:
        return 0.0, 0.0
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy > 0.0 else 0.0
    return slope, min(1.0, r2)


@dataclass(frozen=True, slots=True)
class LeakReport:
    """The detector's verdict on one component after its latest sample."""

    component: str
    suspected: bool
    slope_bytes_per_s: float
    r2: float
    samples: int
    source: Source
    latest_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeakDetector:
    """Flags components whose memory grows steadily (see the module docstring)."""

    def __init__(
        self,
        window: int = 60,
        min_samples: int = 10,
        slope_threshold_bytes_per_s: float = DEFAULT_SLOPE_THRESHOLD,
        min_r2: float = 0.8,
        *,
        sample_fn: Callable[[], int] = process_rss,
        restart_on_leak: bool = False,
        metrics: CodaMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_samples < 3:
            raise ValueError(f"min_samples must be at least 3, got {min_samples}")
        if window < min_samples:
            raise ValueError(f"window ({window}) must hold at least min_samples ({min_samples})")
        if not slope_threshold_bytes_per_s > 0:
            raise ValueError("slope_threshold_bytes_per_s must be positive")
        if not 0.0 <= min_r2 <= 1.0:
            raise ValueError(f"min_r2 must be within [0, 1], got {min_r2}")
        self.window = window
        self.min_samples = min_samples
        self.slope_threshold = float(slope_threshold_bytes_per_s)
        self.min_r2 = min_r2
        self.restart_on_leak = restart_on_leak
        self._sample_fn = sample_fn
        self._metrics = metrics
        self._clock = clock
        self._series: dict[str, deque[tuple[float, float]]] = {}
        self._sources: dict[str, Source] = {}
        self._reports: dict[str, LeakReport] = {}

    def sample(
        self, component: str, memory_usage: object = None, *, at: float | None = None
    ) -> LeakReport:
        """Record one sample for ``component`` and return the updated verdict.

        ``memory_usage`` is the component's own figure in bytes (None: sample process RSS).
        ``at`` is the sample time in seconds (default: the detector's clock).
        """
        when = self._clock() if at is None else float(at)
        source: Source
        if is_memory_figure(memory_usage):
            value, source = int(memory_usage), "component"
        else:
            value, source = int(self._sample_fn()), "process"
        series = self._series.setdefault(component, deque(maxlen=self.window))
        if self._sources.get(component) != source:
            series.clear()  # never fit a line through two different measures
            self._sources[component] = source
        series.append((when, float(value)))

        slope, r2 = least_squares(series)
        enough = len(series) >= self.min_samples
        suspected = enough and slope > self.slope_threshold and r2 >= self.min_r2
        previous = self._reports.get(component)
        report = LeakReport(component, suspected, slope, r2, len(series), source, value)
        self._reports[component] = report
        if suspected and not (previous and previous.suspected):
            logger.warning(
                "memory leak suspected in %s: +%.1f KiB/s over %d samples (r^2=%.2f, %s memory)",
                component, slope / 1024, len(series), r2, source,
            )  # fmt: skip
        elif previous and previous.suspected and not suspected:
            logger.info("memory growth of %s no longer looks like a leak", component)
        if self._metrics is not None:
            self._metrics.memory_leak_suspected.labels(component=component).set(int(suspected))
            self._metrics.memory_growth_rate.labels(component=component).set(
                slope if enough else 0.0
            )
        return report

    def report(self, component: str) -> LeakReport | None:
        """The latest verdict for ``component`` (None before its first sample)."""
        return self._reports.get(component)

    def reset(self, component: str) -> None:
        """Forget ``component``'s samples (after a restart freed its memory)."""
        self._series.pop(component, None)
        self._sources.pop(component, None)
        self._reports.pop(component, None)
        if self._metrics is not None:
            self._metrics.memory_leak_suspected.labels(component=component).set(0)
            self._metrics.memory_growth_rate.labels(component=component).set(0.0)


def is_memory_figure(value: object) -> TypeGuard[int | float]:
    """True for a usable ``memory_usage`` figure: a finite, non-negative number of bytes."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
