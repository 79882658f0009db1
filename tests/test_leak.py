"""LeakDetector: flags real, steadily growing memory; ignores flat memory and one-off steps."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry

from coda_otel.health.leak import LeakDetector, least_squares
from coda_otel.metrics import CodaMetrics

MIB = 1024 * 1024


def held_chunk(size: int) -> bytearray:
    chunk = bytearray(size)
    chunk[::4096] = b"\x01" * len(range(0, size, 4096))  # touch every page so RSS grows
    return chunk


def gauge(metrics: CodaMetrics, name: str, component: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"component": component})


#: Runs in a fresh interpreter: other tests' models and threads (in this process) return and
#: take memory while this one samples, which would blur the slope it measures.
GROWING_CHILD = """
import json, sys
from dataclasses import asdict
from prometheus_client import CollectorRegistry
from coda_otel.health.leak import LeakDetector
from coda_otel.metrics import CodaMetrics
MIB = 1024 * 1024
metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
detector = LeakDetector(window=10, min_samples=5, slope_threshold_bytes_per_s=8 * MIB,
                        metrics=metrics)
held, reports = [], []
for second in range(7):
    # 36 MiB is above glibc's largest mmap threshold: each chunk is fresh memory from the
    # kernel, never pages freed earlier but kept resident by the allocator.
    chunk = bytearray(36 * MIB)
    chunk[::4096] = b"\\x01" * len(range(0, 36 * MIB, 4096))  # touch every page
    held.append(chunk)
    reports.append(detector.sample("process", at=float(second)))
gauge = lambda name: metrics.registry.get_sample_value(name, {"component": "process"})
json.dump({"early": [r.suspected for r in reports[:4]], "last": asdict(reports[-1]),
           "flag": gauge("coda_memory_leak_suspected"),
           "slope": gauge("coda_memory_growth_bytes_per_second")}, sys.stdout)
"""


def test_growing_allocation_is_flagged_via_real_rss() -> None:
    out = subprocess.run(
        [sys.executable, "-c", GROWING_CHILD], capture_output=True, text=True, check=True,
        timeout=120,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert not any(result["early"])  # too few samples to judge
    last = result["last"]
    assert last["suspected"] and last["source"] == "process" and last["samples"] == 7
    assert last["slope_bytes_per_s"] > 24 * MIB and last["r2"] >= 0.8
    assert result["flag"] == 1.0
    assert result["slope"] == pytest.approx(last["slope_bytes_per_s"])
    gc.collect()


def test_flat_memory_is_not_flagged() -> None:
    metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
    detector = LeakDetector(window=20, min_samples=8, slope_threshold_bytes_per_s=2 * MIB,
                            metrics=metrics)  # fmt: skip
    steady = held_chunk(32 * MIB)  # a big but constant allocation
    for second in range(12):
        report = detector.sample("process", at=float(second))
    assert len(steady) == 32 * MIB
    assert not report.suspected and report.samples == 12
    assert gauge(metrics, "coda_memory_leak_suspected", "process") == 0.0


def test_component_figures_step_and_noise_are_not_leaks() -> None:
    detector = LeakDetector(window=20, min_samples=10, slope_threshold_bytes_per_s=1000.0)
    for t in range(20):  # a model load: one step up, then flat
        step = detector.sample("embedder", 100 * MIB if t < 10 else 400 * MIB, at=float(t))
    assert step.source == "component" and step.slope_bytes_per_s > 1000 and step.r2 < 0.8
    assert not step.suspected
    for t in range(20):  # steady growth reported by the component itself
        grow = detector.sample("llm", 50 * MIB + t * 10_000, at=float(t))
    assert grow.suspected and grow.slope_bytes_per_s == pytest.approx(10_000)
    assert detector.report("llm") == grow

    switched = detector.sample("llm", None, at=20.0)  # no figure now: process RSS, new window
    assert switched.source == "process" and switched.samples == 1 and not switched.suspected
    detector.reset("llm")
    assert detector.report("llm") is None


def test_least_squares_and_validation() -> None:
    assert least_squares([(0, 1.0), (1, 3.0), (2, 5.0)]) == (2.0, 1.0)
    assert least_squares([(0, 5.0), (1, 5.0), (2, 5.0)]) == (0.0, 0.0)
    assert least_squares([(1, 5.0), (1, 7.0)]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="min_samples"):
        LeakDetector(min_samples=2)
    with pytest.raises(ValueError, match="window"):
        LeakDetector(window=5, min_samples=10)
    with pytest.raises(ValueError, match="min_r2"):
        LeakDetector(min_r2=1.5)
    with pytest.raises(ValueError, match="slope_threshold"):
        LeakDetector(slope_threshold_bytes_per_s=0)
