"""Barge-in on a real `coda-lite serve` running the local model.

A second turn posted 300 ms into a long answer interrupts the first; a client that disconnects
mid-turn interrupts its own; an ``interrupt`` command over the WebSocket stops a session's
turn. The interrupted turn answers 409 (or nobody), its spans end with an unset status and
``coda.turn.end_reason=interrupted``, its root span says who interrupted and how much was
spoken, its half answer is not in memory, ``conversation_end`` carries the end reason and
``coda_turns_interrupted_total`` moves.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from coda_otel.ws.schema import validator_for
from tests.model_harness import converted_dir
from tests.otlp_receivers import attributes
from tests.service_harness import Service, coda_service

pytestmark = [pytest.mark.slow, pytest.mark.model]

SERVER_MESSAGE = validator_for("server_message")
LONG = "Tell me a long story about a dragon who guards a lighthouse."
CONFIG = "llm:\n  backend: local\n  temperature: 0\n  max_tokens: 400\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Service]:
    converted_dir(models_dir)  # the one-time conversion, before the service starts
    home = tmp_path_factory.mktemp("coda-home")
    env = {
        "CODA_LLM_MODELS_DIR": str(models_dir),
        "CODA_CAPTURE_CONTENT": "1",  # snapshots keep the text, so the test can look
    }
    with coda_service(home, config=CONFIG, env=env, otlp=True) as service:
        yield service


def trace_show(service: Service, conversation_id: str) -> str:
    """``coda-otel trace show`` of the turn's conversation log (written off the turn's path)."""
    logs = service.home / "pipeline_logs"
    found = service.eventually(
        lambda: [p for p in logs.glob("*.json") if conversation_id in p.name],
        what=f"the conversation log of {conversation_id}",
    )
    return subprocess.run(
        [str(Path(sys.executable).with_name("coda-otel")), "trace", "show", str(found[0])],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def interrupted_count(base: str, source: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    found = re.search(rf'^coda_turns_interrupted_total{{source="{source}"}} (\S+)$', text, re.M)
    assert found, f"no coda_turns_interrupted_total for {source}"
    return float(found.group(1))


async def _ws(session: aiohttp.ClientSession, base: str) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"{base}/ws")
    assert (await ws.receive_json(timeout=30))["type"] == "hello"
    events = ["conversation_end", "pipeline_stage"]
    await ws.send_json({"type": "subscribe", "id": "s", "data": {"events": events}})
    return ws


async def _answering(ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
    """Until ``session_id``'s turn has retrieved its memories: the model is answering."""
    while True:
        msg = await ws.receive_json(timeout=120)
        data = msg["data"]
        key = (msg["type"], data.get("session_id"), data.get("stage"))
        if key == ("pipeline_stage", session_id, "memory_retrieval"):
            return


async def _end_of(ws: aiohttp.ClientWebSocketResponse, session_id: str) -> dict[str, Any]:
    """The next ``conversation_end`` of ``session_id`` (validated against the schema)."""
    while True:
        msg = await ws.receive_json(timeout=120)
        SERVER_MESSAGE.validate(msg)
        if msg["type"] == "conversation_end" and msg["data"]["session_id"] == session_id:
            SERVER_MESSAGE.validate(msg)
            return dict(msg["data"])


async def _memory_text(ws: aiohttp.ClientWebSocketResponse, owner: str) -> str:
    await ws.send_json({"type": "take_memory_snapshot", "id": "m", "data": {"user_id": owner}})
    while True:
        msg = await ws.receive_json(timeout=60)
        if msg["id"] == "m":
            assert msg["type"] == "take_memory_snapshot_result", msg
            return Path(msg["data"]["path"]).read_text(encoding="utf-8")


def assert_interrupted_trace(service: Service, trace_id: str, source: str) -> dict[str, Any]:
    """The turn's spans: none in error, every cancelled one and the root say why; the root's
    attributes are returned."""

    receiver = service.receiver
    assert receiver is not None

    def spans() -> list[Any]:
        return [s for _, s in receiver.spans() if s.trace_id.hex() == trace_id]

    # the root span ends last; the exporter sends every 200 ms
    service.eventually(lambda: any(s.name == "conversation" for s in spans()), what="the root")
    found = spans()
    root = next(s for s in found if s.name == "conversation")
    for span in found:
        assert span.status.code == Status.STATUS_CODE_UNSET, span.name  # not an error
    cancelled = [s for s in found if any(e.name == "cancelled" for e in s.events)]
    assert cancelled, [s.name for s in found]
    for span in cancelled:
        assert attributes(span)["coda.turn.end_reason"] == "interrupted", span.name
    attrs = attributes(root)
    assert attrs["coda.turn.end_reason"] == "interrupted"
    assert attrs["coda.turn.interrupted_by"] == source
    assert attrs["coda.conversation.status"] == "cancelled"
    return attrs


async def _barge_in(base: str) -> tuple[int, dict[str, Any], dict[str, Any], dict[str, Any], str]:
    async with aiohttp.ClientSession() as session:
        ws = await _ws(session, base)

        async def post(text: str) -> tuple[int, dict[str, Any]]:
            body = {"text": text, "session_id": "barge"}
            async with session.post(f"{base}/v1/turns", json=body, timeout=300) as resp:
                return resp.status, await resp.json()

        first = asyncio.create_task(post(LONG))
        await _answering(ws, "barge")
        await asyncio.sleep(0.3)  # 300 ms into the answer
        assert not first.done()
        second_status, second = await post("My name is Grace.")
        first_status, first_body = await first
        assert second_status == 200, second
        first_end = await _end_of(ws, "barge")
        second_end = await _end_of(ws, "barge")
        memory = await _memory_text(ws, "barge")
        await ws.close()
        assert first_status == 409 and first_body["error"]["code"] == "interrupted", first_body
        return first_status, first_end, second_end, second, memory


def test_a_second_turn_interrupts_the_first(service: Service) -> None:
    before = interrupted_count(service.base, "new_turn")
    _, first, second, second_body, memory = asyncio.run(_barge_in(service.base))
    assert first["end_reason"] == "interrupted" and first["status"] == "cancelled"
    interruption = first["interruption"]
    assert interruption["interrupted_by"] == "new_turn"
    assert 0 <= interruption["spoken_chars"] <= interruption["generated_chars"]
    assert 0 <= interruption["spoken_sentences"] <= interruption["generated_sentences"]
    assert second["end_reason"] == "completed" and second["interruption"] is None
    assert second["conversation_id"] == second_body["conversation_id"]
    # the half answer (and its question) are not remembered; the second turn is
    assert "Grace" in memory
    assert "dragon" not in memory.lower() and "lighthouse" not in memory.lower()
    assert interrupted_count(service.base, "new_turn") == before + 1
    attrs = assert_interrupted_trace(service, first["trace_id"], "new_turn")
    assert attrs["coda.turn.generated_chars"] == interruption["generated_chars"]
    cancelled = [s["stage"] for s in first["stages"] if s["status"] == "cancelled"]
    assert cancelled[:1] == ["llm"]  # cut short while the model wrote
    shown = trace_show(service, first["conversation_id"])
    assert "INTERRUPTED by new_turn (spoken " in shown.splitlines()[0], shown


async def _disconnect(base: str) -> tuple[dict[str, Any], str]:
    async with aiohttp.ClientSession() as session:
        ws = await _ws(session, base)
        async with aiohttp.ClientSession() as client:  # the client that leaves
            body = {"text": LONG, "session_id": "leaver"}
            post = asyncio.create_task(client.post(f"{base}/v1/turns", json=body, timeout=300))
            await _answering(ws, "leaver")
            assert not post.done()
            post.cancel()  # closes the connection mid-turn
            await asyncio.gather(post, return_exceptions=True)
        end = await _end_of(ws, "leaver")
        memory = await _memory_text(ws, "leaver")
        await ws.close()
        return end, memory


def test_a_client_that_disconnects_interrupts_its_turn(service: Service) -> None:
    before = interrupted_count(service.base, "client_disconnect")
    end, memory = asyncio.run(_disconnect(service.base))
    assert end["end_reason"] == "interrupted" and end["status"] == "cancelled"
    assert end["interruption"]["interrupted_by"] == "client_disconnect"
    assert "dragon" not in memory.lower()
    assert interrupted_count(service.base, "client_disconnect") == before + 1
    assert_interrupted_trace(service, end["trace_id"], "client_disconnect")


async def _command(base: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    async with aiohttp.ClientSession() as session:
        ws = await _ws(session, base)
        body = {"text": LONG, "session_id": "cmd"}
        post = asyncio.create_task(session.post(f"{base}/v1/turns", json=body, timeout=300))
        await _answering(ws, "cmd")
        await ws.send_json({"type": "interrupt", "id": "i", "data": {"session_id": "cmd"}})
        ends = []  # the turn has stopped before the command answers: its end comes first
        while (msg := await ws.receive_json(timeout=60))["id"] != "i":
            if msg["type"] == "conversation_end" and msg["data"]["session_id"] == "cmd":
                ends.append(msg["data"])
        SERVER_MESSAGE.validate(msg)
        resp = await post
        end = ends[0] if ends else await _end_of(ws, "cmd")
        await ws.send_json({"type": "interrupt", "id": "j", "data": {"session_id": "cmd"}})
        while (idle := await ws.receive_json(timeout=60))["id"] != "j":
            pass
        await ws.close()
        assert idle["data"]["interrupted"] is False  # nothing runs any more
        return dict(msg["data"]), end, resp.status


def test_the_interrupt_command_stops_a_sessions_turn(service: Service) -> None:
    result, end, status = asyncio.run(_command(service.base))
    assert result["interrupted"] is True and result["conversation_id"] == end["conversation_id"]
    assert status == 409
    assert end["end_reason"] == "interrupted"
    assert end["interruption"]["interrupted_by"] == "command"
    assert json.dumps(end)  # plain JSON all the way
