"""Tail sampling in the process: whole turns, the Collector's policies and names.

Real SDK tracer providers and exporters: a trace is kept or dropped whole once its root ends;
errors, interrupted and slow turns are always kept; the baseline share is decided by trace id;
nothing undecided is lost. With ``CODA_TRACE_SAMPLE_PERCENT`` set, :func:`configure` samples the
file exporter's turns and the export counters count only what was kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry

from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.tracing.file_exporter import read_otlp_json_lines
from coda_otel.tracing.setup import configure
from coda_otel.tracing.tail_sampling import POLICIES, TailPolicy, TailSamplingProcessor
from tests.otlp_receivers import fake_turn
from tests.prometheus_harness import DEPLOY, load_yaml

SECOND = 1_000_000_000


def _pipeline(
    policy: TailPolicy, **kw: int
) -> tuple[TracerProvider, InMemorySpanExporter, TailSamplingProcessor]:
    exported = InMemorySpanExporter()
    sampler = TailSamplingProcessor(policy, [SimpleSpanProcessor(exported)], **kw)
    provider = TracerProvider()
    provider.add_span_processor(sampler)
    return provider, exported, sampler


def _turn(
    provider: TracerProvider,
    *,
    error: bool = False,
    end_reason: str | None = None,
    seconds: float = 0.01,
) -> int:
    """A root "conversation" span with two stage children; returns its trace id."""
    tracer = provider.get_tracer("test")
    start = 1_700_000_000 * SECOND
    root = tracer.start_span("conversation", start_time=start)
    context = root.get_span_context()
    parent = trace.set_span_in_context(root)
    for name in ("stt", "llm"):
        child = tracer.start_span(name, context=parent, start_time=start)
        if error and name == "llm":
            child.set_status(Status(StatusCode.ERROR, "llm failed"))
        child.end(end_time=start + SECOND // 100)
    if end_reason is not None:
        root.set_attribute("coda.turn.end_reason", end_reason)
    root.end(end_time=start + int(seconds * SECOND))
    return context.trace_id


def _traces(exported: InMemorySpanExporter) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for span in exported.get_finished_spans():
        assert span.context is not None
        out.setdefault(span.context.trace_id, []).append(span.name)
    return out


def test_errors_interruptions_and_slow_turns_are_kept_whole() -> None:
    provider, exported, sampler = _pipeline(TailPolicy(baseline_percent=0, latency_budget_s=1))
    kept = {
        _turn(provider, error=True),
        _turn(provider, end_reason="interrupted"),
        _turn(provider, seconds=2.5),
    }
    dropped = {_turn(provider), _turn(provider, end_reason="completed"), _turn(provider)}
    traces = _traces(exported)
    assert set(traces) == kept and not set(traces) & dropped
    assert all(sorted(names) == ["conversation", "llm", "stt"] for names in traces.values())
    assert sampler.decisions == {"errors": 1, "interrupted": 1, "slow": 1, "dropped": 3}


def test_the_baseline_share_is_decided_by_trace_id() -> None:
    provider, exported, _ = _pipeline(TailPolicy(baseline_percent=30))
    ids = [_turn(provider) for _ in range(400)]
    kept = set(_traces(exported))
    assert 0.2 < len(kept) / len(ids) < 0.4
    threshold = 0.3 * 2**64
    assert kept == {t for t in ids if t % 2**64 < threshold}
    everything, exported_all, _ = _pipeline(TailPolicy(baseline_percent=100))
    _turn(everything)
    assert len(_traces(exported_all)) == 1


def test_a_span_ending_after_its_root_follows_the_decision() -> None:
    provider, exported, _ = _pipeline(TailPolicy(baseline_percent=0))
    tracer = provider.get_tracer("test")
    for status in (StatusCode.ERROR, StatusCode.OK):
        root = tracer.start_span("conversation")
        late = tracer.start_span("memory_update", context=trace.set_span_in_context(root))
        root.set_status(Status(status))
        root.end()
        late.end()
    names = sorted(s.name for s in exported.get_finished_spans())
    assert names == ["conversation", "memory_update"]  # the error turn, late span included


def test_nothing_undecided_is_lost() -> None:
    """Over the pending bound, and at shutdown, unfinished traces are passed on, not dropped."""
    provider, exported, sampler = _pipeline(TailPolicy(baseline_percent=0), max_pending_traces=2)
    tracer = provider.get_tracer("test")
    roots = [tracer.start_span("conversation") for _ in range(4)]
    for root in roots:
        tracer.start_span("stt", context=trace.set_span_in_context(root)).end()
    assert len(exported.get_finished_spans()) == 2  # the two oldest, past the bound
    assert sampler.decisions["overflow"] == 2
    provider.shutdown()
    assert len(exported.get_finished_spans()) == 4


def test_policy_names_are_the_collectors() -> None:
    config = load_yaml(DEPLOY / "otel-collector" / "config.yaml")
    names = [p["name"] for p in config["processors"]["tail_sampling"]["policies"]]
    assert tuple(names) == POLICIES


@pytest.mark.parametrize(
    ("percent", "budget", "message"),
    [("ten", None, "CODA_TRACE_SAMPLE_PERCENT='ten'"), ("150", None, "0..100"), ("5", "0", "pos")],
)
def test_bad_settings_say_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, percent: str, budget: str | None, message: str
) -> None:
    monkeypatch.setenv("CODA_TRACE_SAMPLE_PERCENT", percent)
    if budget is not None:
        monkeypatch.setenv("CODA_TURN_LATENCY_BUDGET_MS", budget)
    with pytest.raises(ValueError, match=message):
        TailPolicy.from_env()


async def test_configure_samples_the_file_exporters_turns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CODA_HOME", str(tmp_path))
    monkeypatch.setenv("CODA_TRACE_SAMPLE_PERCENT", "0")
    metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
    telemetry = configure(set_global=False, metrics=metrics)
    assert "tail sampling" in telemetry.exporter_description
    dbg = ConversationPipelineDebugger(
        output_dir=tmp_path / "logs", tracer_provider=telemetry.tracer_provider, save_logs=False
    )
    await fake_turn(dbg, turn=1)
    with pytest.raises(RuntimeError):
        await fake_turn(dbg, turn=2, fail_stage="llm")
    await fake_turn(dbg, turn=3)
    assert telemetry.shutdown(5)

    spans = [
        span
        for request in read_otlp_json_lines(tmp_path / "traces" / "traces.jsonl")
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    assert len({s["traceId"] for s in spans}) == 1  # the failed turn alone
    assert {s["name"] for s in spans} == {"conversation", "stt", "memory_retrieval", "llm"}
    registry = metrics.registry
    assert registry.get_sample_value("coda_otel_spans_exported_total") == len(spans)
    assert registry.get_sample_value("coda_otel_spans_dropped_total") == 0
