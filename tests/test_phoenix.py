"""Traces in a real trace browser: Arize Phoenix on loopback, read back through its REST API.

Turns of one session are sent over OTLP/HTTP and then OTLP/gRPC; Phoenix must show one
session holding every turn, and the llm span as an LLM span with its model, provider, token
counts, time to first token, and (content capture on) the messages in and out.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coda_lite.config import load_config
from coda_lite.service.app import build_app
from tests.prometheus_harness import ManagedProcess, http_json, wait_until
from tests.support import IN_CI, free_port, require_module

pytestmark = [pytest.mark.slow, pytest.mark.stack]

SESSION = "phoenix-session"
TURNS = ["My name is Ada and I live in Lisbon.", "Where do I live?"]


class Phoenix:
    def __init__(self, http: str, grpc: str) -> None:
        self.http, self.grpc = http, grpc

    def get(self, path: str) -> Any:
        status, body = http_json(f"{self.http}{path}", timeout=10)
        assert status == 200, body
        return body


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    require_module("phoenix")
    exe = shutil.which("phoenix", path=str(Path(sys.executable).parent))
    if exe is None:
        if IN_CI:
            pytest.fail("the phoenix command (arize-phoenix) is not installed")
        pytest.skip("the phoenix command (arize-phoenix) is not installed")
    work = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = free_port(), free_port()
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(work),
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    base = f"http://127.0.0.1:{port}"
    with ManagedProcess([exe, "serve"], work / "phoenix.log", env=env) as proc:
        wait_until(
            lambda: http_json(f"{base}/healthz", timeout=2)[0] == 200,
            120.0,
            "phoenix /healthz",
            proc,
        )
        yield Phoenix(base, f"http://127.0.0.1:{grpc_port}")


async def _turns(
    home: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str, proto: str
) -> list[Any]:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", proto)
    config = load_config(
        env={
            "CODA_HOME": str(home),
            "CODA_LLM_BACKEND": "echo",
            "CODA_CAPTURE_CONTENT": "1",
            "CODA_TTS_BACKEND": "none",
        }
    )
    app = build_app(config)
    try:
        return [await app.run_turn(text, session_id=SESSION) for text in TURNS]
    finally:
        await app.aclose()  # flushes the spans


async def test_one_session_holds_every_turn_and_the_llm_span_is_complete(
    phoenix: Phoenix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = await _turns(tmp_path / "http", monkeypatch, phoenix.http, "http/protobuf")
    results += await _turns(tmp_path / "grpc", monkeypatch, phoenix.grpc, "grpc")
    trace_ids = {r.trace_id for r in results}
    assert len(trace_ids) == 4

    def one_session() -> Any:
        sessions = phoenix.get("/v1/projects/default/sessions")["data"]
        mine = [s for s in sessions if s["session_id"] == SESSION]
        return mine if mine and {t["trace_id"] for t in mine[0]["traces"]} == trace_ids else None

    sessions = wait_until(one_session, 30, "one Phoenix session with all four turns")
    assert len(sessions) == 1

    spans = phoenix.get("/v1/projects/default/spans?limit=100")["data"]
    llm_spans = [s for s in spans if s["name"] == "llm"]
    assert len(llm_spans) == 4
    by_trace = {s["context"]["trace_id"]: s for s in llm_spans}
    for result in results:
        span = by_trace[result.trace_id]
        a = span["attributes"]
        assert span["span_kind"] == "LLM"
        assert a["llm.model_name"] == "echo" and a["gen_ai.provider.name"] == "echo"
        assert a["llm.token_count.prompt"] > 0 and a["llm.token_count.completion"] > 0
        assert a["gen_ai.response.time_to_first_chunk"] > 0
        # the user's message: what they told before (if anything), then their words
        user = [v for k, v in a.items() if k.startswith("llm.input_messages.")
                and k.endswith(".message.content")][-1]  # fmt: skip
        assert user.endswith(result.transcript)
        out = json.loads(a["gen_ai.output.messages"])
        assert out[0]["parts"][0]["content"] == result.response
        assert a["llm.output_messages.0.message.content"] == result.response  # shown as output
    # the GenAI inference span under each llm stage is an LLM span too
    inference = [s for s in spans if s["name"] == "chat echo"]
    assert {s["context"]["trace_id"] for s in inference} == trace_ids
    for span in inference:
        a = span["attributes"]
        assert span["span_kind"] == "LLM", span
        assert a["llm.model_name"] == "echo" and a["gen_ai.provider.name"] == "echo"
        assert a["llm.token_count.prompt"] > 0 and a["llm.token_count.completion"] > 0
        assert a["gen_ai.usage.input_tokens"] > 0 and "gen_ai.input.messages" in a
