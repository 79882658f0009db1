"""End to end: a real ``coda-lite serve`` process, exporting OTLP to a real receiver.

One server for the module (the embedding model loads once); every request goes over real
HTTP or a real WebSocket, and the traces it exports are read back from the receiver.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from coda_otel.testing import eventually
from tests.otlp_receivers import attributes
from tests.service_harness import Service, coda_service
from tests.support import require_tool

pytestmark = [pytest.mark.slow]

STAGES = ["stt", "memory_retrieval", "llm", "memory_update", "tts"]
#: The order stages end in: speech ends before the exchange is remembered.
SPOKEN_ORDER = ["stt", "memory_retrieval", "llm", "tts", "memory_update"]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    require_tool("espeak-ng")
    home = tmp_path_factory.mktemp("coda-home")
    config = (
        "telemetry:\n  health_interval: 0.5\n  cache_stats_interval: 0.5\n"
        "server:\n  max_body_bytes: 2000000\n"
    )
    with coda_service(home, config=config, otlp=True) as service:
        yield service


def test_turns_remember_and_export_one_trace_each(service: Service) -> None:
    first = service.turn(text="My name is Ada and I live in Lisbon.", session_id="s-1")
    assert first.status_code == 200, first.text
    second = service.turn(text="Where do I live?", session_id="s-1")
    assert second.status_code == 200, second.text
    body = second.json()
    assert "Lisbon" in body["response"]
    assert body["turn"] == 2 and body["session_id"] == "s-1"
    assert set(body["timings_ms"]) == set(STAGES)
    trace_id = body["trace_id"]
    assert len(trace_id) == 32

    mine = service.spans(trace_id, count=8)
    by_name = {s.name: s for s in mine}
    # the request's SERVER span, the turn under it, its stages, the inference span
    assert set(by_name) == {"POST /v1/turns", "conversation", *STAGES, "chat echo"}
    root = by_name["conversation"]
    assert root.parent_span_id == by_name["POST /v1/turns"].span_id
    assert all(by_name[stage].parent_span_id == root.span_id for stage in STAGES)
    assert by_name["chat echo"].parent_span_id == by_name["llm"].span_id
    # remembered once spoken: the memory update starts after speech ended
    assert by_name["memory_update"].start_time_unix_nano >= by_name["tts"].end_time_unix_nano
    assert attributes(root)["session.id"] == "s-1"
    llm = attributes(next(s for s in mine if s.name == "llm"))
    assert llm["gen_ai.request.model"] == "echo"
    assert llm["gen_ai.usage.output_tokens"] > 0


def test_metrics_pass_promtool_and_exemplars_lead_to_exported_traces(
    service: Service, tmp_path: Path
) -> None:
    promtool = require_tool("promtool")
    result = service.turn(text="I like green tea.", session_id="s-2")
    assert result.status_code == 200
    text = requests.get(f"{service.base}/metrics", timeout=10).text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == ""
    ok_line = next(
        ln for ln in text.splitlines() if ln.startswith('coda_conversations_total{status="ok"}')
    )
    assert float(ok_line.split()[-1]) >= 1

    om = requests.get(
        f"{service.base}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=10,
    ).text
    exemplar_ids = {
        ln.split('trace_id="')[1][:32]
        for ln in om.splitlines()
        if ln.startswith("coda_pipeline_stage_duration_seconds_bucket") and "trace_id=" in ln
    }
    assert exemplar_ids
    receiver = service.receiver
    assert receiver is not None
    service.eventually(
        lambda: exemplar_ids & {s.trace_id.hex() for _, s in receiver.spans()},
        what="an exemplar's trace exported",
    )


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b"{}", 400),
        (json.dumps({"text": "hi", "audio_wav_base64": "AAAA"}).encode(), 400),
        (json.dumps({"text": ""}).encode(), 400),
        (json.dumps({"text": 42}).encode(), 400),
        (json.dumps({"audio_wav_base64": "%%%not base64"}).encode(), 400),
        (json.dumps({"text": "hi", "session_id": "../../etc/passwd"}).encode(), 400),
        (json.dumps({"text": "hi", "extra": 1}).encode(), 400),
        (json.dumps({"audio_wav_base64": base64.b64encode(b"RIFF nope").decode()}).encode(), 422),
        (json.dumps({"text": "x" * 3_000_000}).encode(), 413),
        (b'{"text": "\\ud800 lone surrogate"}', 400),
    ],
)
def test_bad_turn_requests_get_json_errors_and_service_goes_on(
    service: Service, body: bytes, code: int
) -> None:
    response = requests.post(
        f"{service.base}/v1/turns",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == code, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    assert service.turn(text="Hello again.").status_code == 200


def test_unknown_route_and_method_are_json_errors(service: Service) -> None:
    assert requests.get(f"{service.base}/nope", timeout=5).json()["error"]["code"] == "not_found"
    wrong = requests.get(f"{service.base}/v1/turns", timeout=5)
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_health_endpoints_answer(service: Service) -> None:
    health = requests.get(f"{service.base}/health", timeout=5)
    assert health.status_code == 200
    components = health.json()["components"]
    assert set(components) == {"stt", "embedder", "memory_store", "llm", "tts", "disk"}
    assert components["disk"]["required"] is False  # a low disk degrades, never fails health
    assert requests.get(f"{service.base}/health/live", timeout=5).status_code == 200


async def test_websocket_streams_a_turn_and_answers_commands(service: Service) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{service.base}/ws") as ws:
        hello = await ws.receive_json(timeout=10)
        assert hello["type"] == "hello"
        await ws.send_json(
            {
                "type": "subscribe",
                "id": 1,
                "data": {"events": ["pipeline_stage", "memory_snapshot"]},
            }
        )
        await ws.send_json({"type": "text_input", "id": 2, "data": {"text": "I work as a pilot."}})
        stages: list[str] = []
        result: dict[str, Any] | None = None
        deadline = time.monotonic() + 60
        while (result is None or len(stages) < 5) and time.monotonic() < deadline:
            msg = await ws.receive_json(timeout=60)
            if msg["type"] == "pipeline_stage":
                stages.append(msg["data"]["stage"])
            elif msg["type"] == "text_input_result":
                result = msg["data"]
        assert stages == SPOKEN_ORDER
        assert result is not None and "pilot" in result["transcript"]

        await ws.send_json({"type": "take_memory_snapshot", "id": 3, "data": {}})
        await ws.send_json({"type": "get_cache_stats", "id": 4, "data": {}})
        seen: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 30
        wanted = {"take_memory_snapshot_result", "memory_snapshot", "get_cache_stats_result"}
        while not wanted <= set(seen) and time.monotonic() < deadline:
            msg = await ws.receive_json(timeout=30)
            seen[msg["type"]] = msg
        assert seen["take_memory_snapshot_result"]["id"] == 3
        snap_id = seen["take_memory_snapshot_result"]["data"]["snapshot_id"]
        assert (service.home / "snapshots" / f"memory_{snap_id}.json").exists()
        caches = seen["get_cache_stats_result"]["data"]["stats"]["cache_types"]
        assert {"embedding", "llm_response"} <= set(caches)


async def _answer(ws: Any, rid: int, mtype: str, data: dict[str, Any]) -> dict[str, Any]:
    """Send one command; the frames that came before its answer are returned with it."""
    await ws.send_json({"type": mtype, "id": rid, "data": data})
    frames: list[dict[str, Any]] = []
    while (msg := await ws.receive_json(timeout=60)).get("id") != rid:
        frames.append(msg)
    return {"answer": msg, "before": frames}


def _ok_turns(service: Service) -> float:
    text = requests.get(f"{service.base}/metrics", timeout=10).text
    line = next(
        ln for ln in text.splitlines() if ln.startswith('coda_conversations_total{status="ok"}')
    )
    return float(line.split()[-1])


async def test_tracing_off_stops_spans_and_nothing_else(service: Service) -> None:
    turns_before = _ok_turns(service)
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{service.base}/ws") as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        events = {"events": ["pipeline_stage", "conversation_end"]}
        await _answer(ws, 1, "subscribe", events)
        off = await _answer(ws, 2, "enable_debugging", {"feature": "tracing", "enabled": False})
        try:
            assert off["answer"]["data"]["state"]["tracing"] is False
            untraced = await _answer(ws, 3, "text_input", {"text": "I grow tomatoes."})
        finally:
            await _answer(ws, 4, "enable_debugging", {"feature": "tracing", "enabled": True})
        traced = await _answer(ws, 5, "text_input", {"text": "What do I grow?"})
    result = untraced["answer"]["data"]
    assert result["trace_id"] is None and result["conversation_id"]
    shown = [m["type"] for m in untraced["before"]]
    assert shown == ["pipeline_stage"] * 5 + ["conversation_end"]  # the WebSocket still sees it
    assert [m["data"]["stage"] for m in untraced["before"][:5]] == SPOKEN_ORDER
    assert _ok_turns(service) >= turns_before + 2  # metrics count the untraced turn too
    logs = service.home / "pipeline_logs"
    await eventually(
        lambda: any(result["conversation_id"] in p.name for p in logs.glob("*.json")),
        15,
        what="the untraced turn's conversation log",
    )
    trace_id = traced["answer"]["data"]["trace_id"]
    receiver = service.receiver
    assert receiver is not None
    await eventually(  # spans leave in order: once the later turn's root is in ...
        lambda: any(
            s.trace_id.hex() == trace_id and s.name == "conversation" for _, s in receiver.spans()
        ),
        15,
        what="the traced turn's spans",
    )
    exported = [attributes(s).get("coda.conversation.id") for _, s in receiver.spans()]
    assert traced["answer"]["data"]["conversation_id"] in exported
    assert result["conversation_id"] not in exported  # ... none of the untraced turn came


def test_injected_crash_is_detected_and_recovered(service: Service) -> None:
    service.inject("tts", "crash")
    failed = service.turn(text="Say something new.")  # before the watchdog's 2nd check (0.5 s)
    assert failed.status_code == 502, failed.text
    assert failed.json()["error"]["stage"] == "tts"
    service.eventually(
        lambda: (
            service.metric('coda_component_restarts_total{component="tts",kind="restart"}') >= 1
        ),
        what="the watchdog restarting tts",
    )
    service.eventually(
        lambda: service.component("tts")["status"] == "healthy", what="tts healthy again"
    )
    assert service.turn(text="Say something new.").status_code == 200
    errors = requests.get(f"{service.base}/metrics", timeout=5).text
    assert 'coda_pipeline_stage_errors_total{error_type="InjectedFault",stage="tts"} 1.0' in errors


def test_serve_refuses_a_public_bind_without_a_token(tmp_path: Path) -> None:
    env = {**os.environ, "CODA_HOME": str(tmp_path)}
    env.pop("CODA_DEBUG_TOKEN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "coda_lite", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "refusing to start" in proc.stderr and "CODA_DEBUG_TOKEN" in proc.stderr


def test_a_spoken_turn_over_http(service: Service, tmp_path: Path) -> None:
    espeak = require_tool("espeak-ng")
    wav = tmp_path / "q.wav"
    voice = ["-v", "en-us+klatt", "-s", "160"]  # the voice Coda speaks with
    subprocess.run([espeak, *voice, "-w", str(wav), "what is the weather today"], check=True)
    response = requests.post(
        f"{service.base}/v1/turns",
        json={
            "audio_wav_base64": base64.b64encode(wav.read_bytes()).decode(),
            "return_audio": True,
        },
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "weather" in body["transcript"]
    assert base64.b64decode(body["audio_wav_base64"])[:4] == b"RIFF"


def test_browser_tricks_are_refused(service: Service) -> None:
    """Form posts (no CORS preflight) and DNS-rebound Host names never reach the pipeline."""
    form = requests.post(f"{service.base}/v1/turns", data="text=hi", timeout=5)
    assert form.status_code == 415
    rebound = requests.post(
        f"{service.base}/v1/turns", json={"text": "hi"}, headers={"Host": "evil.example"}, timeout=5
    )
    assert rebound.status_code == 403
    assert rebound.json()["error"]["code"] == "forbidden_host"


def test_every_error_answer_has_the_one_shape(service: Service) -> None:
    base = service.base
    answers = [
        requests.post(
            f"{base}/v1/turns",
            data=b"{not json",
            timeout=30,
            headers={"Content-Type": "application/json"},
        ),
        requests.post(
            f"{base}/v1/turns",
            data=b"text=hi",
            timeout=30,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        requests.post(f"{base}/v1/turns", json={"text": ""}, timeout=30),
        requests.get(f"{base}/no/such/route", timeout=30),
        requests.get(f"{base}/v1/turns", timeout=30),
        requests.post(f"{base}/debug/components/nope/reset", json={}, timeout=30),
        requests.post(
            f"{base}/debug/faults", json={"component": "llm", "fault": "melt"}, timeout=30
        ),
        requests.get(f"{base}/ws", timeout=30),
        requests.get(f"{base}/ws", headers={"Origin": "http://evil.example"}, timeout=30),
        requests.get(f"{base}/health", headers={"Host": "evil.example"}, timeout=30),
    ]
    statuses = [r.status_code for r in answers]
    assert all(400 <= s < 600 for s in statuses), statuses
    for r in answers:
        body = r.json()
        assert r.headers["Content-Type"].startswith("application/json"), r.url
        error = body["error"]
        assert isinstance(error["code"], str) and re.fullmatch(r"[a-z_]+", error["code"]), body
        assert isinstance(error["message"], str) and error["message"], body
