"""Voice latency on a real turn: a real `coda-lite serve` running the local model, spoken input.

One session of turns (typed and spoken with espeak-ng, recognized by pocketsphinx) goes through
the service while a real OTLP receiver collects the traces and a WebSocket client listens. On
every turn the breakdown adds up to the voice-to-voice latency, to the microsecond; the trace
shows the llm and tts spans overlapping, each sentence as an event of the tts span, and the
GenAI attributes; the measures reach /metrics (with exemplars), the log and the WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from coda_otel.pipeline.conversation_log import read_log
from coda_otel.ws.schema import validator_for
from tests.model_harness import converted_dir
from tests.otlp_receivers import attributes
from tests.service_harness import Service, coda_service
from tests.support import require_tool

pytestmark = [pytest.mark.slow, pytest.mark.model]

SERVER_MESSAGE = validator_for("server_message")
SESSION = "voice-1"
TYPED = ["My name is Ada and I live in Lisbon.", "Describe a sunny day at the beach."]
SPOKEN = "where do i live"


def assert_adds_up(latency: dict[str, Any]) -> None:
    parts = latency["breakdown_us"]
    assert set(parts) == {
        "recognition", "retrieval", "llm_first_sentence", "tts_first_sentence", "handoffs"
    }  # fmt: skip
    assert all(isinstance(v, int) and v >= 0 for v in parts.values()), parts
    assert sum(parts.values()) == latency["voice_to_voice_us"], latency


class Run:
    """The service and what its turns answered (HTTP bodies, WebSocket ends)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.base, self.home, self.receiver = service.base, service.home, service.receiver
        self.bodies: list[dict[str, Any]] = []
        self.ws_ends: list[dict[str, Any]] = []


async def _turns(run: Run) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{run.base}/ws") as ws:
        assert (await ws.receive_json(timeout=30))["type"] == "hello"
        await ws.send_json(
            {"type": "subscribe", "id": "s", "data": {"events": ["conversation_end"]}}
        )
        wav = subprocess.run(
            ["espeak-ng", "-v", "en-us+klatt", "-s", "160", "--stdout", SPOKEN],
            capture_output=True,
            check=True,
        ).stdout
        bodies: list[dict[str, Any]] = [{"text": t} for t in TYPED]
        bodies.append({"audio_wav_base64": base64.b64encode(wav).decode()})
        for body in bodies:
            async with session.post(
                f"{run.base}/v1/turns", json={**body, "session_id": SESSION}, timeout=300
            ) as resp:
                assert resp.status == 200, await resp.text()
                run.bodies.append(await resp.json())
        while len(run.ws_ends) < len(bodies):
            msg = await ws.receive_json(timeout=30)
            if msg["type"] == "conversation_end":
                SERVER_MESSAGE.validate(msg)  # the published schema, latency included
                run.ws_ends.append(msg["data"])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Run]:
    require_tool("espeak-ng")
    converted_dir(models_dir)  # the one-time conversion, before the service starts
    home = tmp_path_factory.mktemp("coda-home")
    # a longer answer than a spoken default, so that speech can overlap the writing
    config = "llm:\n  backend: local\n  temperature: 0\n  max_tokens: 60\n  max_sentences: 4\n"
    env = {
        "CODA_LLM_BACKEND": None,  # the config file chooses the real model
        "CODA_LLM_MODELS_DIR": str(models_dir),
        "CODA_CAPTURE_CONTENT": "1",
    }
    with coda_service(home, config=config, env=env, otlp=True) as service:
        r = Run(service)
        asyncio.run(_turns(r))
        yield r


def test_every_turn_has_a_breakdown_that_adds_up(run: Run) -> None:
    assert len(run.bodies) == 3
    for body in run.bodies:
        latency = body["latency"]
        assert_adds_up(latency)
        assert latency["streamed"] is True
        assert 0 < latency["time_to_first_token_us"] <= latency["time_to_first_audio_us"]
        assert latency["time_to_first_audio_us"] <= latency["voice_to_voice_us"]
        assert (
            latency["output_tokens_per_second"] is None or latency["output_tokens_per_second"] > 0
        )
    spoken = run.bodies[-1]
    assert "live" in spoken["transcript"]  # pocketsphinx heard espeak-ng
    assert spoken["latency"]["breakdown_us"]["recognition"] > 10_000  # recognition really ran
    assert run.bodies[0]["latency"]["breakdown_us"]["recognition"] < 10_000  # typed: skipped


def test_trace_shows_streaming_and_genai_attributes(run: Run) -> None:
    # per turn: the SERVER span, the root, five stages and the inference span
    spans = run.receiver.wait_for_spans(8 * len(run.bodies), timeout_s=30)
    by_trace: dict[str, dict[str, Any]] = {}
    for _, span in spans:
        by_trace.setdefault(span.trace_id.hex(), {})[span.name] = span
    overlapping = 0
    for body in run.bodies:
        trace = by_trace[body["trace_id"]]
        root, llm, tts = trace["conversation"], trace["llm"], trace["tts"]
        for name in (
            "conversation",
            "stt",
            "memory_retrieval",
            "llm",
            "memory_update",
            "tts",
        ):  # the session, not the turn, on every span
            assert attributes(trace[name])["gen_ai.conversation.id"] == SESSION, name
        assert attributes(root)["coda.conversation.id"] == body["conversation_id"]
        root_attrs = attributes(root)
        v2v = root_attrs["coda.latency.voice_to_voice"]
        assert v2v == pytest.approx(body["latency"]["voice_to_voice_us"] / 1e6)
        a = attributes(llm)
        assert a["gen_ai.provider.name"] == "transformers"
        assert a["gen_ai.request.model"] == "SmolLM2-135M-Instruct"
        assert a["gen_ai.request.stream"] is True
        assert a["gen_ai.usage.output_tokens"] > 0 and a["gen_ai.usage.input_tokens"] > 0
        assert 0 < a["gen_ai.response.time_to_first_chunk"] < v2v
        messages = json.loads(a["gen_ai.input.messages"])  # capture on
        assert messages[-1]["role"] == "user" and messages[0]["role"] == "system"
        out = json.loads(a["gen_ai.output.messages"])
        assert out[0]["parts"][0]["content"] == body["response"]
        sentences = [e for e in tts.events if e.name == "tts.sentence"]
        assert len(sentences) >= 1
        if len(sentences) > 1:  # speech starts while the model still writes: spans overlap
            overlapping += 1
            assert tts.start_time_unix_nano < llm.end_time_unix_nano
        assert [attributes(e)["coda.tts.sentence.index"] for e in sentences] == list(
            range(len(sentences))
        )
        spoken = " ".join(attributes(e)["coda.content"] for e in sentences)
        assert spoken.split() == body["response"].split()  # every word, spoken once, in order
    assert overlapping >= 1, "no answer had two sentences: nothing could overlap"


def test_measures_reach_metrics_log_and_websocket(run: Run) -> None:
    text = requests.get(
        f"{run.base}/metrics", headers={"Accept": "application/openmetrics-text"}, timeout=10
    ).text
    for name in (
        "coda_llm_time_to_first_token_seconds",
        "coda_time_to_first_audio_seconds",
        "coda_voice_to_voice_latency_seconds",
        "coda_llm_output_tokens_per_second",
    ):
        count = [ln for ln in text.splitlines() if ln.startswith(f"{name}_count")]
        assert count and float(count[0].split()[-1]) >= len(run.bodies) - 1, name
        assert any(
            ln.startswith(f"{name}_bucket") and "trace_id=" in ln for ln in text.splitlines()
        )
    ends = {e["conversation_id"]: e for e in run.ws_ends}
    for body in run.bodies:
        assert ends[body["conversation_id"]]["latency"] == body["latency"]
        logs = list((run.home / "pipeline_logs").rglob(f"*{body['conversation_id']}*.json"))
        assert logs, body["conversation_id"]
        assert read_log(logs[0])["latency"] == body["latency"]
