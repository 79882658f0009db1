"""W3C trace context in and out, across real processes.

A caller process with its own TracerProvider opens a span and posts a turn with its
``traceparent``; coda-lite serve answers it with a model served by a real HTTP server that
records the ``traceparent`` it received. One OTLP receiver collects both processes' spans: they
must form one trace, caller -> SERVER span -> ``conversation`` -> ``llm`` stage -> the GenAI
inference span, and the model server's header must name the inference span. A failed model
call (an injected crash, an unreachable server) still leaves an inference span with its
provider, model, status error and ``error.type``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from coda_lite.config import load_config
from coda_lite.pipeline.conversation import StageError
from coda_lite.service.app import build_app
from tests.fake_openai import RESPONSE_MODEL, FakeOpenAI
from tests.otlp_receivers import HttpReceiver, attributes
from tests.service_harness import Service, coda_service
from tests.support import free_port

pytestmark = [pytest.mark.slow]

CONFIG = (
    "llm:\n  backend: openai\n  url: {url}\n  model: fake\n  temperature: 0.3\n"
    "tts:\n  backend: none\n"
    "telemetry:\n  llm_cache_size: 0\n  health_interval: 0.5\n"
)

CALLER = textwrap.dedent(
    """
    import json, sys, urllib.request
    from opentelemetry import propagate, trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    endpoint, turns_url = sys.argv[1], sys.argv[2]
    provider = TracerProvider(resource=Resource.create({"service.name": "voice-gateway"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint + "/v1/traces")))
    with provider.get_tracer("gateway").start_as_current_span("gateway call") as span:
        headers = {"Content-Type": "application/json"}
        propagate.inject(headers)
        body = json.dumps({"text": "Hello from the gateway."}).encode()
        req = urllib.request.Request(turns_url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.load(resp)
        print(json.dumps({"trace_id": format(span.get_span_context().trace_id, "032x"),
                          "span_id": format(span.get_span_context().span_id, "016x"),
                          "answer_trace_id": answer["trace_id"]}))
    provider.shutdown()
    """
)


@pytest.fixture(scope="module")
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, model: FakeOpenAI) -> Iterator[Service]:
    home = tmp_path_factory.mktemp("coda-trace-context")
    with coda_service(home, config=CONFIG.format(url=model.url), otlp=True) as service:
        yield service


def _hex(raw: bytes) -> str:
    return raw.hex()


def test_one_trace_from_the_caller_through_the_turn_to_the_model_server(
    service: Service, model: FakeOpenAI
) -> None:
    receiver = service.receiver
    assert receiver is not None
    sent = len(model.traceparents)
    run = subprocess.run(
        [sys.executable, "-c", CALLER, receiver.endpoint, service.url("/v1/turns")],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    import json

    caller = json.loads(run.stdout.strip().splitlines()[-1])
    trace_id = caller["trace_id"]
    assert caller["answer_trace_id"] == trace_id  # the turn answered in the caller's trace
    spans = service.spans(trace_id, count=8)
    by_name: dict[str, Span] = {s.name: s for s in spans}
    assert {"gateway call", "POST /v1/turns", "conversation", "llm", "chat fake"} <= set(by_name)
    server = by_name["POST /v1/turns"]
    assert _hex(server.parent_span_id) == caller["span_id"]
    assert server.kind == Span.SpanKind.SPAN_KIND_SERVER
    assert attributes(server)["http.response.status_code"] == 200
    root = by_name["conversation"]
    assert root.parent_span_id == server.span_id
    llm_stage, inference = by_name["llm"], by_name["chat fake"]
    assert inference.parent_span_id == llm_stage.span_id
    assert inference.kind == Span.SpanKind.SPAN_KIND_CLIENT
    a = attributes(inference)
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "fake" and a["gen_ai.request.temperature"] == 0.3
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == int(model.url.rsplit(":")[-1])
    assert a["gen_ai.usage.input_tokens"] == 3 and a["gen_ai.usage.output_tokens"] == 1
    assert a["coda.gen_ai.usage.estimated"] is False
    assert [v.string_value for v in a["gen_ai.response.finish_reasons"].values] == ["stop"]
    assert a["gen_ai.response.model"] == RESPONSE_MODEL
    (received,) = model.traceparents[sent:]
    assert received is not None
    _, header_trace, header_parent, _ = received.split("-")
    assert header_trace == trace_id and header_parent == _hex(inference.span_id)
    scrape = service.metrics()
    assert 'gen_ai_client_operation_duration_seconds_count{error_type="",' in scrape
    assert 'gen_ai_token_type="output"' in scrape


def test_an_injected_crash_leaves_a_failed_inference_span(service: Service) -> None:
    service.inject("llm", "crash")
    failed = service.turn("Are you there?")
    assert failed.status_code == 502, failed.text
    receiver = service.receiver
    assert receiver is not None

    def failed_inference() -> list[Any]:
        return [
            s
            for _, s in receiver.spans()
            if s.name == "chat fake" and s.status.code == Status.STATUS_CODE_ERROR
        ]

    (span, *_) = service.eventually(failed_inference, what="a failed inference span")
    a = attributes(span)
    assert a["error.type"] == "InjectedFault"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "fake"
    assert 'gen_ai_client_operation_duration_seconds_count{error_type="InjectedFault"' in (
        service.metrics()
    )


async def test_an_unreachable_model_server_leaves_a_failed_inference_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    (tmp_path / "config.yaml").write_text(CONFIG.format(url=closed), encoding="utf-8")
    with HttpReceiver() as receiver:
        monkeypatch.setenv("CODA_HOME", str(tmp_path))
        monkeypatch.delenv("CODA_LLM_BACKEND", raising=False)
        monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        app = build_app(load_config(tmp_path / "config.yaml"))
        try:
            with pytest.raises(StageError):
                await app.run_turn("Anyone home?")
        finally:
            await app.aclose()  # flushes the spans
        spans = [s for _, s in receiver.spans() if s.name == "chat fake"]
    (span,) = spans
    a = attributes(span)
    assert span.status.code == Status.STATUS_CODE_ERROR
    assert a["error.type"] == "LLMError"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "fake"
    assert a["server.address"] == "127.0.0.1"
