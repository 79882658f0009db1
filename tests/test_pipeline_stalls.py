"""Stalls and end reasons in the pipeline debugger, on any pipeline (no coda_lite).

A stage silent past its budget is reported while it runs (span event, listeners, metrics,
the oldest in-flight age); progress restarts the budget; a turn marked interrupted ends with
an unset status and the reason on every cancelled span, and counts as interrupted.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from coda_otel.events import StallEvent
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.pipeline.metrics_listener import PipelineMetrics
from coda_otel.testing import RecordingListener, eventually
from coda_otel.tracing.file_exporter import FileSpanExporter
from coda_otel.tracing.waterfall import load, render
from tests.support import FakeClock


def shown(tmp_path: Path) -> str:
    """``coda-otel trace show`` of the last trace in the folder's OTLP file."""
    (path,) = (tmp_path / "traces").glob("*.jsonl")
    return render(load(path))


class Stalls(RecordingListener):
    def __init__(self) -> None:
        super().__init__()
        self.stalls: list[tuple[StallEvent, bool]] = []  # (event, stage still running)
        self.running: set[str] = set()

    def on_stage_stalled(self, event: StallEvent) -> None:
        self.stalls.append((event, event.stage in self.running))


def make(
    tmp_path: Path, budgets: dict[str, float], clock: Callable[[], float] = time.monotonic
) -> tuple[Any, InMemorySpanExporter, Stalls]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(tmp_path / "traces")))
    metrics = CodaMetrics(CollectorRegistry())
    listener = Stalls()
    dbg = ConversationPipelineDebugger(
        output_dir=tmp_path,
        tracer_provider=provider,
        listeners=[PipelineMetrics(metrics), listener],
        stall_budgets=budgets,
        clock=clock,
    )
    metrics.stage_inflight_oldest.set_function(dbg.stalls.oldest_age)
    return (dbg, metrics), exporter, listener


def value(metrics: CodaMetrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_a_silent_stage_is_reported_while_it_runs_and_progress_resets(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    (dbg, metrics), exporter, listener = make(tmp_path, {"llm": 0.2, "stt": 0.2}, clock)
    ages: list[float] = []
    with dbg.conversation(session_id="s", turn=1) as conv:
        async with conv.stage("stt", {}) as st:  # alive every 50 ms: never stalled
            for _ in range(8):
                clock.advance(0.05)
                st.mark_progress()
                dbg.stalls.check()
        async with conv.stage("llm", {}) as st:
            listener.running.add("llm")
            clock.advance(0.5)  # silent: one stall, however often it is checked
            dbg.stalls.check()
            dbg.stalls.check()
            ages.append(value(metrics, "coda_stage_inflight_oldest_seconds"))
            st.mark_progress()
            clock.advance(0.35)  # silent again after progress: a second stall
            dbg.stalls.check()
            listener.running.discard("llm")
    assert [(e.stage, running) for e, running in listener.stalls] == [("llm", True)] * 2
    first, second = (event for event, _ in listener.stalls)
    assert (first.budget_s, first.idle_s, first.running_s) == (0.2, 0.5, 0.5)
    assert (second.idle_s, second.running_s) == pytest.approx((0.35, 0.85))
    assert first.trace_id == conv.trace_id
    assert value(metrics, "coda_stage_stalls_total", stage="llm") == 2
    assert value(metrics, "coda_stage_stalls_total", stage="stt") == 0
    assert ages == [0.5]  # the llm stage, in flight
    assert value(metrics, "coda_stage_inflight_oldest_seconds") == 0.0  # nothing runs now
    llm = next(s for s in exporter.get_finished_spans() if s.name == "llm")
    assert [e.name for e in llm.events] == ["stage.stalled", "stage.stalled"]
    assert llm.attributes["coda.stage.stalled"] is True
    (end,) = listener.conversations
    assert [s.stage for s in end.stalls] == ["llm", "llm"] and end.end_reason == "completed"
    lines = {line.split()[0]: line for line in shown(tmp_path).splitlines()[1:]}
    assert lines["llm"].endswith("STALLED") and not lines["stt"].endswith("STALLED")


async def test_the_event_loop_checks_a_running_stage_by_itself(tmp_path: Path) -> None:
    (dbg, _), _, listener = make(tmp_path, {"tts": 0.05, "llm": 30.0})
    with dbg.conversation(session_id="s", turn=1) as conv:
        async with conv.stage("llm", {}), conv.stage("tts", {}) as st:
            # the llm stage armed a check 30 s away; the tts stage's earlier budget re-arms it
            await eventually(lambda: listener.stalls, what="a stall reported by the loop")
            st.mark_progress()
            await eventually(lambda: len(listener.stalls) == 2, what="a second silence")
    assert [event.stage for event, _ in listener.stalls] == ["tts", "tts"]
    assert all(event.idle_s >= 0.05 for event, _ in listener.stalls)


async def test_an_interrupted_turn_ends_unset_with_its_reason(tmp_path: Path) -> None:
    (dbg, metrics), exporter, listener = make(tmp_path, {})

    async def turn() -> None:
        with dbg.conversation(session_id="s", turn=1) as conv:
            conv.set_end_reason("interrupted", {"interrupted_by": "new_turn"})
            try:
                async with conv.stage("llm", {}):
                    await asyncio.sleep(10)
            except asyncio.CancelledError:
                conv.set_end_reason("interrupted", {"spoken_chars": 3, "generated_chars": 9})
                raise

    task = asyncio.create_task(turn())
    await eventually(dbg.stalls.in_flight, what="the llm stage running")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for span in spans.values():
        assert span.status.status_code == StatusCode.UNSET, span.name
        assert span.attributes["coda.turn.end_reason"] == "interrupted", span.name
    root = spans["conversation"].attributes
    assert (root["coda.turn.interrupted_by"], root["coda.turn.spoken_chars"]) == ("new_turn", 3)
    (end,) = listener.conversations
    assert (end.status, end.end_reason) == ("cancelled", "interrupted")
    assert end.interruption == {"interrupted_by": "new_turn", "spoken_chars": 3,
                                "generated_chars": 9}  # fmt: skip
    assert value(metrics, "coda_turns_interrupted_total", source="new_turn") == 1
    dbg.flush()
    (log,) = [p for p in tmp_path.glob("*.json")]
    assert '"end_reason": "interrupted"' in log.read_text(encoding="utf-8")
    header = shown(tmp_path).splitlines()[0]
    assert "cancelled  INTERRUPTED by new_turn (spoken 3 of 9 characters)" in header


def test_a_stage_outside_an_event_loop_is_tracked_not_timed(tmp_path: Path) -> None:
    (dbg, metrics), _, listener = make(tmp_path, {"memory_update": 0.01})
    with dbg.conversation(turn=1) as conv, conv.stage("memory_update", {}):
        assert value(metrics, "coda_stage_inflight_oldest_seconds") >= 0.0
        assert len(dbg.stalls.in_flight()) == 1
    assert dbg.stalls.in_flight() == [] and listener.stalls == []


async def test_a_finished_stage_is_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    # A stage under a stall budget registers a callback bound to itself; once it ends, nothing
    # may keep it (its span, its content) in a reference cycle waiting for the collector.
    (dbg, _), _, _ = make(tmp_path, {"llm": 30.0})
    with dbg.conversation(session_id="s", turn=1) as conv:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(3):
                async with conv.stage("llm", {"query": "hi"}) as st:
                    st.set_output({"response": "hello"})
            gc.collect()
            left = [type(o).__name__ for o in gc.garbage]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert "Stage" not in left and "InFlight" not in left
