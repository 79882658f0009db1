"""The inference span and the GenAI client metrics, through InferenceObserver's public API."""

from __future__ import annotations

import asyncio
import json

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry, generate_latest

from coda_otel.inference import INTERRUPTED, USAGE_ESTIMATED, InferenceObserver
from coda_otel.metrics import CodaMetrics
from coda_otel.sanitize import Sanitizer


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def metrics() -> CodaMetrics:
    return CodaMetrics(CollectorRegistry(), process_collector=False)


def observer(
    spans: InMemorySpanExporter, metrics: CodaMetrics, capture: bool = False
) -> InferenceObserver:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return InferenceObserver(
        tracer_provider=provider, metrics=metrics, sanitizer=Sanitizer(capture_content=capture)
    )


def sample(metrics: CodaMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


LABELS = {
    "gen_ai_operation_name": "chat",
    "gen_ai_provider_name": "openai",
    "gen_ai_request_model": "smollm2",
}


def test_a_remote_call_is_a_client_span_with_its_request_attributes_from_the_start(
    spans: InMemorySpanExporter, metrics: CodaMetrics
) -> None:
    inference = observer(spans, metrics)
    call = inference.start(
        "chat", provider="openai", request_model="smollm2", server_address="127.0.0.1",
        server_port=8000, temperature=0.2, max_tokens=64, stream=True,
    )  # fmt: skip
    attrs = call.span.attributes or {}  # readable before the call ends: sampling sees them
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == "smollm2"
    call.first_chunk()
    call.finish(
        finish_reasons=("length",), input_tokens=30, output_tokens=64,
        response_model="smollm2:135m-q4", usage_estimated=False,
    )  # fmt: skip
    (span,) = spans.get_finished_spans()
    assert span.name == "chat smollm2" and span.kind == SpanKind.CLIENT
    a = dict(span.attributes or {})
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == 8000
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.max_tokens"] == 64
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert a["gen_ai.response.model"] == "smollm2:135m-q4"
    assert a["gen_ai.usage.input_tokens"] == 30 and a["gen_ai.usage.output_tokens"] == 64
    assert a[USAGE_ESTIMATED] is False
    assert a["gen_ai.response.time_to_first_chunk"] >= 0
    assert "gen_ai.output.messages" not in a  # content is not captured by default
    count = "gen_ai_client_operation_duration_seconds_count"
    assert sample(metrics, count, **LABELS, error_type="") == 1
    tokens = "gen_ai_client_token_usage_sum"
    assert sample(metrics, tokens, **LABELS, gen_ai_token_type="output") == 64
    assert sample(metrics, tokens, **LABELS, gen_ai_token_type="input") == 30
    ttfc = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    assert sample(metrics, ttfc, **LABELS) == 1


def test_an_in_process_call_is_internal_and_estimates_say_so(
    spans: InMemorySpanExporter, metrics: CodaMetrics
) -> None:
    call = observer(spans, metrics).start("chat", provider="echo", request_model="echo")
    call.finish(input_tokens=5, output_tokens=3, usage_estimated=True)
    (span,) = spans.get_finished_spans()
    assert span.kind == SpanKind.INTERNAL and "server.address" not in (span.attributes or {})
    assert (span.attributes or {})[USAGE_ESTIMATED] is True


def test_a_failed_call_keeps_provider_model_and_error_type(
    spans: InMemorySpanExporter, metrics: CodaMetrics
) -> None:
    call = observer(spans, metrics).start(
        "chat", provider="openai", request_model="smollm2", server_address="10.0.0.9"
    )
    call.fail(ConnectionRefusedError("connection refused"))
    (span,) = spans.get_finished_spans()
    a = dict(span.attributes or {})
    assert span.status.status_code == StatusCode.ERROR
    assert a["error.type"] == "ConnectionRefusedError"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "smollm2"
    assert [e.name for e in span.events] == ["exception"]
    count = "gen_ai_client_operation_duration_seconds_count"
    assert sample(metrics, count, **LABELS, error_type="ConnectionRefusedError") == 1


def test_an_interrupted_call_is_not_an_error_and_says_so(
    spans: InMemorySpanExporter, metrics: CodaMetrics
) -> None:
    call = observer(spans, metrics).start("chat", provider="echo", request_model="echo")
    call.interrupted()
    call.finish(output_tokens=3)  # too late: the span ended once, as interrupted
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.UNSET
    assert (span.attributes or {})["gen_ai.response.finish_reasons"] == (INTERRUPTED,)


def test_captured_messages_are_redacted(spans: InMemorySpanExporter, metrics: CodaMetrics) -> None:
    inference = observer(spans, metrics, capture=True)
    call = inference.start(
        "chat", provider="echo", request_model="echo",
        input_messages=[{"role": "user", "content": "mail me at ada@example.com"}],
    )  # fmt: skip
    call.finish(finish_reasons=("length",), output_text="Sure, ada@example.com.")
    a = dict(spans.get_finished_spans()[0].attributes or {})
    (sent,) = json.loads(str(a["gen_ai.input.messages"]))
    (said,) = json.loads(str(a["gen_ai.output.messages"]))
    assert "ada@example.com" not in json.dumps([sent, said])
    assert said["finish_reason"] == "length" and said["role"] == "assistant"


async def test_the_span_is_current_while_the_request_is_made(
    spans: InMemorySpanExporter, metrics: CodaMetrics
) -> None:
    from opentelemetry import propagate

    call = observer(spans, metrics).start("chat", provider="openai", request_model="m")
    headers: dict[str, str] = {}
    with call.active():
        await asyncio.sleep(0)
        propagate.inject(headers)
    call.finish()
    (span,) = spans.get_finished_spans()
    assert headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


def test_the_exposition_names_follow_the_prometheus_translation(metrics: CodaMetrics) -> None:
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE gen_ai_client_operation_duration_seconds histogram" in text
    assert "# TYPE gen_ai_client_token_usage histogram" in text
    assert "# TYPE gen_ai_client_operation_time_to_first_chunk_seconds histogram" in text
