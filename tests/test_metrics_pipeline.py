"""PipelineMetrics: stage/conversation events become bounded, exemplar-carrying metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from coda_otel.events import ConversationEvent, StageEvent
from coda_otel.metrics import MAX_DYNAMIC_VALUES, CodaMetrics
from coda_otel.pipeline.metrics_listener import PipelineMetrics

TRACE = "0af7651916cd43dd8448eb211c80319c"


def stage(**kw: Any) -> StageEvent:
    base: dict[str, Any] = {
        "conversation_id": "c",
        "session_id": None,
        "turn": 1,
        "stage": "llm",
        "status": "ok",
        "started_at": 0.0,
        "duration_s": 0.2,
        "input_size": 0,
        "output_size": 0,
        "trace_id": TRACE,
    }
    return StageEvent(**(base | kw))


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, labels)
    return 0.0 if v is None else v


def test_stage_duration_with_exemplar_and_errors() -> None:
    m = CodaMetrics(process_collector=False)
    pm = PipelineMetrics(m)
    pm.on_stage_end(stage(duration_s=0.2))
    pm.on_stage_end(stage(stage="stt", duration_s=0.04, trace_id=None))
    pm.on_stage_end(stage(status="error", error_type="ConnectionError", duration_s=0.01))
    reg = m.registry
    assert value(reg, "coda_pipeline_stage_duration_seconds_count", stage="llm") == 2
    assert value(reg, "coda_pipeline_stage_duration_seconds_count", stage="stt") == 1
    labels = {"stage": "llm", "error_type": "ConnectionError"}
    assert value(reg, "coda_pipeline_stage_errors_total", **labels) == 1
    text = generate_latest(reg).decode()
    assert f'trace_id="{TRACE}"' in text
    stt_lines = [ln for ln in text.splitlines() if 'stage="stt"' in ln]
    assert stt_lines and not any("trace_id" in ln for ln in stt_lines)  # no trace, no exemplar
    assert pm.failures == 0


def test_qualified_error_types_keep_their_class_name_as_label() -> None:
    """Spans carry ``error.type`` fully qualified; the metric label is the bare class name."""
    m = CodaMetrics(process_collector=False)
    pm = PipelineMetrics(m)
    pm.on_stage_end(stage(status="error", error_type="coda_lite.llm.LLMError"))
    labels = {"stage": "llm", "error_type": "LLMError"}
    assert value(m.registry, "coda_pipeline_stage_errors_total", **labels) == 1


def test_conversations_counted_by_status() -> None:
    m = CodaMetrics(process_collector=False)
    pm = PipelineMetrics(m)
    for status in ("ok", "ok", "error", "cancelled"):
        pm.on_conversation_end(ConversationEvent("c", None, 1, status, 0.0, 1.5, trace_id=TRACE))  # type: ignore[arg-type]
    reg = m.registry
    assert value(reg, "coda_conversations_total", status="ok") == 2
    assert value(reg, "coda_conversations_total", status="error") == 1
    assert value(reg, "coda_conversations_total", status="cancelled") == 1
    assert value(reg, "coda_conversation_duration_seconds_count") == 4
    assert value(reg, "coda_conversation_duration_seconds_sum") == 6.0


def test_labels_stay_bounded_under_hostile_input() -> None:
    m = CodaMetrics(process_collector=False)
    pm = PipelineMetrics(m)
    pm.on_stage_end(stage(stage="conv-1234/../../etc"))
    for i in range(MAX_DYNAMIC_VALUES + 15):
        pm.on_stage_end(stage(status="error", error_type=f"Error{i}"))
    pm.on_stage_end(stage(status="error", error_type="not an identifier <script>"))
    reg = m.registry
    assert value(reg, "coda_pipeline_stage_duration_seconds_count", stage="other") == 1
    error_types = {
        s.labels["error_type"]
        for fam in reg.collect()
        if fam.name == "coda_pipeline_stage_errors"
        for s in fam.samples
    }
    assert len(error_types) <= MAX_DYNAMIC_VALUES + 1 and "other" in error_types


def test_never_raises_on_broken_events() -> None:
    m = CodaMetrics(process_collector=False)
    pm = PipelineMetrics(m)
    pm.on_stage_end(stage(duration_s=float("nan")))  # clock trouble: recorded as 0
    pm.on_stage_end(stage(duration_s=-3.0))
    pm.on_stage_end(stage(trace_id="not-hex" * 40))  # bad trace id: no exemplar
    pm.on_stage_end(stage(duration_s="soon"))  # wrong type: swallowed, counted
    pm.on_conversation_end(None)  # type: ignore[arg-type]
    assert pm.failures == 2
    assert value(m.registry, "coda_pipeline_stage_duration_seconds_count", stage="llm") == 3
    assert value(m.registry, "coda_pipeline_stage_duration_seconds_sum", stage="llm") == 0.2


def test_each_stage_exemplar_carries_its_own_trace() -> None:
    m = CodaMetrics(process_collector=False)
    pm = PipelineMetrics(m)
    other = "1" * 32
    pm.on_stage_end(stage(duration_s=0.2))
    pm.on_stage_end(stage(duration_s=0.2, trace_id=other))  # same bucket, newer trace
    pm.on_stage_end(stage(stage="tts", duration_s=0.2))  # back to the first trace
    pm.on_stage_end(stage(stage="stt", duration_s=0.2, trace_id=None))  # unsampled: none
    lines = generate_latest(m.registry).decode().splitlines()
    exemplars = {
        ln.split("stage=")[1].split('"')[1]: ln.split('trace_id="')[1][:32]
        for ln in lines
        if "_bucket" in ln and 'trace_id="' in ln
    }
    assert exemplars == {"llm": other, "tts": TRACE}
