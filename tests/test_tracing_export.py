"""Traces reach real OTLP receivers (gRPC and HTTP), the file default, or are counted as lost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.exposition import generate_latest

from coda_otel.cli.main import main as cli_main
from coda_otel.events import StageEvent
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline.conversation_log import read_log
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.pipeline.metrics_listener import PipelineMetrics
from coda_otel.sanitize import Sanitizer
from coda_otel.tracing.file_exporter import FileSpanExporter, read_otlp_json_lines, trace_files
from coda_otel.tracing.setup import configure
from tests.otlp_receivers import STAGES, GrpcReceiver, HttpReceiver, attributes, fake_turn
from tests.support import free_port

ERROR = 2  # STATUS_CODE_ERROR in the OTLP proto


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name in {"CODA_CAPTURE_CONTENT", "CODA_REDACT"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("CODA_HOME", str(tmp_path / "home"))


def _metrics() -> CodaMetrics:
    return CodaMetrics(CollectorRegistry(), process_collector=False)


def _counter(metrics: CodaMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


def _debugger(telemetry: object, tmp_path: Path, **kw: object) -> ConversationPipelineDebugger:
    return ConversationPipelineDebugger(
        output_dir=tmp_path / "logs",
        tracer_provider=telemetry.tracer_provider,  # type: ignore[attr-defined]
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_each_conversation_is_one_trace_with_five_stage_children(
    protocol: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    with receiver as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
        metrics = _metrics()
        telemetry = configure(set_global=False, metrics=metrics, service_version="9.9.9")
        assert telemetry.exporter_description.startswith(f"otlp {protocol} {rx.endpoint}")
        dbg = _debugger(telemetry, tmp_path, save_logs=False)
        convs = [await fake_turn(dbg, turn=n) for n in (1, 2)]
        assert telemetry.force_flush(10)
        spans = rx.wait_for_spans(12)
        assert telemetry.shutdown(5)

    assert len({s.trace_id for _, s in spans}) == 2
    for conv in convs:
        mine = [(res, s) for res, s in spans if s.trace_id.hex() == conv.trace_id]
        roots = [s for _, s in mine if s.name == "conversation"]
        assert len(roots) == 1 and roots[0].parent_span_id == b""
        root = roots[0]
        assert attributes(root) == {
            "coda.conversation.id": conv.conversation_id,
            "session.id": "session-1",
            "gen_ai.conversation.id": "session-1",  # the session, not the turn
            "coda.turn": conv.turn,
            "coda.conversation.status": "ok",
            "coda.turn.end_reason": "completed",
        }
        children = sorted(
            (s for _, s in mine if s is not root), key=lambda s: s.start_time_unix_nano
        )
        assert [s.name for s in children] == list(STAGES)
        assert all(s.parent_span_id == root.span_id for s in children)
        for child in children:
            attrs = attributes(child)
            assert attrs["coda.stage"] == child.name
            assert attrs["coda.input.size"] > 0 and attrs["coda.output.size"] > 0
            assert not any(key.endswith(".preview") for key in attrs)  # capture is off
        llm = attributes(children[2])
        assert llm["gen_ai.operation.name"] == "chat"
        assert llm["gen_ai.request.model"] == "tiny-llm"
        assert (llm["gen_ai.usage.input_tokens"], llm["gen_ai.usage.output_tokens"]) == (12, 7)
        assert all(attributes(c)["gen_ai.conversation.id"] == "session-1" for c in children)
        resource = mine[0][0]
        assert resource["service.name"] == "coda-lite"
        assert resource["service.version"] == "9.9.9"
        assert resource["host.name"]
    assert _counter(metrics, "coda_otel_spans_exported_total") == 12
    assert _counter(metrics, "coda_otel_spans_dropped_total") == 0


async def test_error_turn_marks_stage_and_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with HttpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{rx.endpoint}/v1/traces")
        telemetry = configure(set_global=False)
        dbg = _debugger(telemetry, tmp_path)
        with pytest.raises(RuntimeError, match="llm failed"):
            await fake_turn(dbg, transcript="mail me at ann@example.org", fail_stage="llm")
        assert telemetry.force_flush(10)
        spans = [s for _, s in rx.wait_for_spans(4)]
        telemetry.shutdown(5)

    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"conversation", "stt", "memory_retrieval", "llm"}
    llm = by_name["llm"]
    assert llm.status.code == ERROR
    assert attributes(llm)["error.type"] == "RuntimeError"
    assert attributes(llm)["coda.stage.status"] == "error"
    [event] = [e for e in llm.events if e.name == "exception"]
    event_attrs = attributes(event)
    assert event_attrs["exception.type"] == "RuntimeError"
    assert event_attrs["exception.message"] == "llm failed for mail me at [EMAIL]"
    assert "ann@example.org" not in event_attrs["exception.stacktrace"]
    root = by_name["conversation"]
    assert root.status.code == ERROR
    assert attributes(root)["error.type"] == "RuntimeError"


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_dead_collector_costs_only_counted_spans(
    protocol: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    metrics = _metrics()
    telemetry = configure(set_global=False, metrics=metrics, export_timeout_s=0.5)
    dbg = _debugger(telemetry, tmp_path, save_logs=False)
    convs = [await fake_turn(dbg, turn=n) for n in (1, 2, 3)]
    assert all(c.trace_id for c in convs)  # the turns completed normally

    started = time.monotonic()
    telemetry.shutdown(timeout_s=2.0)
    # The behaviour under test is a bounded exit, so the bound is generous, not a benchmark.
    assert time.monotonic() - started < 15
    assert _counter(metrics, "coda_otel_spans_dropped_total") == 18
    assert _counter(metrics, "coda_otel_spans_exported_total") == 0


async def test_file_default_writes_collector_json_lines(tmp_path: Path) -> None:
    home = Path(os.environ["CODA_HOME"])
    telemetry = configure(set_global=False)
    traces = home / "traces" / "traces.jsonl"
    assert telemetry.exporter_description == f"file {traces}"
    dbg = _debugger(telemetry, tmp_path, save_logs=False)
    conv = await fake_turn(dbg)
    assert telemetry.shutdown(5)

    requests = list(read_otlp_json_lines(traces))
    spans = [
        span
        for request in requests
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    assert {s["traceId"] for s in spans} == {conv.trace_id}  # hex, as OTLP/JSON requires
    root = next(s for s in spans if s["name"] == "conversation")
    children = sorted(
        (s for s in spans if s is not root), key=lambda s: int(s["startTimeUnixNano"])
    )
    assert [s["name"] for s in children] == list(STAGES)
    assert {s["parentSpanId"] for s in children} == {root["spanId"]}
    assert all(isinstance(s["kind"], int) for s in spans)


async def test_trace_show_reads_the_traces_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    telemetry = configure(set_global=False)
    conv = await fake_turn(_debugger(telemetry, tmp_path, save_logs=False))
    telemetry.shutdown(5)
    assert cli_main(["trace", "show", "--last", "--traces"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert conv.trace_id in out[0]
    assert [line.split()[0] for line in out[1:]] == list(STAGES)


def test_file_exporter_rotates_and_bounds_bytes(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = FileSpanExporter(tmp_path, max_file_bytes=2000, max_files=3, max_total_bytes=6000)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    for i in range(60):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    files = trace_files(tmp_path)
    assert 1 < len(files) <= 3
    assert sum(p.stat().st_size for p in files) <= 6000 + 2000
    last = [json.loads(line) for line in files[-1].read_text().splitlines()]
    assert last[-1]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] == "span-59"


async def test_sampler_from_environment_is_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry = configure(set_global=False)
    metrics = _metrics()
    events: list[StageEvent] = []
    dbg = _debugger(telemetry, tmp_path, listeners=[PipelineMetrics(metrics)])
    dbg.add_listener(_StageRecorder(events))
    conv = await fake_turn(dbg)
    assert dbg.flush(5)
    telemetry.shutdown(5)
    assert not (Path(os.environ["CODA_HOME"]) / "traces" / "traces.jsonl").exists()
    assert telemetry.stats is not None and telemetry.stats.exported == 0
    # Nothing was exported, so nothing may point at a trace: no ids, no exemplars.
    assert conv.trace_id is None and conv.span_id is None
    assert [e.stage for e in events] == list(STAGES)
    assert all(e.trace_id is None and e.span_id is None for e in events)
    record = read_log(dbg.log_writer.last_path)  # type: ignore[arg-type]
    assert record["trace_id"] is None and {s["span_id"] for s in record["stages"]} == {None}
    exposition = generate_latest(metrics.registry).decode()
    assert 'coda_pipeline_stage_duration_seconds_count{stage="llm"} 1.0' in exposition
    assert "# {trace_id=" not in exposition  # no exemplar


class _StageRecorder:
    def __init__(self, events: list[StageEvent]) -> None:
        self.events = events

    def on_stage_end(self, event: StageEvent) -> None:
        self.events.append(event)

    def on_conversation_end(self, event: object) -> None:
        pass


async def test_queue_overflow_is_counted_while_the_service_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A collector that accepts connections and never answers: the batch queue overflows."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)  # never accepted: the export waits for its timeout
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        )
        monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
        monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
        metrics = _metrics()
        telemetry = configure(set_global=False, metrics=metrics, export_timeout_s=2.0)
        dbg = _debugger(telemetry, tmp_path, save_logs=False)
        convs = [await fake_turn(dbg, turn=n) for n in (1, 2, 3)]
        # Before any shutdown: 18 spans, at most 2 in flight and 4 queued; the evicted ones
        # are counted as they are discarded (the 3 root spans are still held by `convs`).
        dropped_while_running = _counter(metrics, "coda_otel_spans_dropped_total")
        assert dropped_while_running >= 18 - 6 - len(convs)
        telemetry.shutdown(timeout_s=1.0)
    # At exit every span is accounted for exactly once.
    assert _counter(metrics, "coda_otel_spans_dropped_total") == 18
    assert _counter(metrics, "coda_otel_spans_exported_total") == 0
    del convs
    assert _counter(metrics, "coda_otel_spans_dropped_total") == 18


def test_exporter_selection_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert configure(set_global=False).exporter_description == "none"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert configure(set_global=False).exporter_description == "console"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="unknown exporter 'zipkin'"):
        configure(set_global=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="'http/json' is not supported"):
        configure(set_global=False)


def test_provider_passed_in_is_used_as_is() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    telemetry = configure(tracer_provider=provider)
    assert telemetry.tracer_provider is provider and not telemetry.owned
    assert telemetry.shutdown(1)  # only flushed: the host still owns it
    with provider.get_tracer("t").start_as_current_span("still-works") as span:
        assert span.is_recording()


def test_a_global_provider_set_by_the_host_is_never_replaced(tmp_path: Path) -> None:
    script = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from coda_otel.tracing.setup import configure\n"
        "host = TracerProvider(); trace.set_tracer_provider(host)\n"
        "t = configure()\n"
        "assert t.tracer_provider is host and trace.get_tracer_provider() is host\n"
        "assert not t.owned\n"
        "print('kept')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kept"


async def test_content_capture_and_redaction_switches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "write to ann@example.org"
    with HttpReceiver() as rx:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint)
        telemetry = configure(set_global=False)
        dbg = _debugger(telemetry, tmp_path, sanitizer=Sanitizer())
        off = await fake_turn(dbg, transcript=secret)
        dbg.capture_content = True
        redacted = await fake_turn(dbg, transcript=secret)
        dbg.sanitizer.redact = False
        raw = await fake_turn(dbg, transcript=secret)
        telemetry.force_flush(10)
        spans = [s for _, s in rx.wait_for_spans(18)]
        telemetry.shutdown(5)

    def previews(conv: object) -> str:
        tid = conv.trace_id  # type: ignore[attr-defined]
        mine = [s for s in spans if s.trace_id.hex() == tid]
        return " ".join(
            str(v) for s in mine for k, v in attributes(s).items() if k.endswith(".preview")
        )

    assert previews(off) == ""
    assert "[EMAIL]" in previews(redacted) and "ann@example.org" not in previews(redacted)
    assert "ann@example.org" in previews(raw)
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    assert Sanitizer.from_env().capture_content and Sanitizer.from_env().redact
