"""The debug WebSocket against a real ``coda-lite serve`` process (issue 7, and issue 6's reset).

One server for the module (the embedding model loads once). It runs with a watchdog that
marks a component failed at its first failed check (``max_restarts: 0``), so an operator's
``reset_component`` has something to re-enable; traces are not exported.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests

from coda_otel.ws.schema import validator_for
from tests.service_harness import Service, coda_service
from tests.support import require_tool

pytestmark = [pytest.mark.slow]

SERVER_MESSAGE = validator_for("server_message")
WAIT = 60.0  # hang guard only; nothing asserts on time
TURNS = 30


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    require_tool("espeak-ng")
    config = (
        "telemetry:\n  health_interval: 0.5\n  cache_stats_interval: 0.5\n"
        "  failure_threshold: 1\n  max_restarts: 0\n"
    )
    with coda_service(tmp_path_factory.mktemp("coda-home"), config=config) as service:
        yield service


async def request(
    ws: aiohttp.ClientWebSocketResponse, rid: str, mtype: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Send one command; return its answer (events in between are validated and skipped)."""
    await ws.send_json({"type": mtype, "id": rid, "data": data})
    while True:
        frame: dict[str, Any] = await ws.receive_json(timeout=WAIT)
        SERVER_MESSAGE.validate(frame)
        if frame["id"] == rid:
            return frame


def dropped_total(service: Service) -> float:
    for line in service.metrics().splitlines():
        if line.startswith("coda_debug_ws_events_dropped_total "):
            return float(line.split()[-1])
    raise AssertionError("coda_debug_ws_events_dropped_total is not exported")


async def test_reset_component_re_enables_a_failed_component(service: Service) -> None:
    service.inject("embedder", "unhealthy")
    await asyncio.to_thread(  # max_restarts 0: failed at once
        service.eventually,
        lambda: service.component("embedder")["status"] == "failed",
        timeout=WAIT,
        what="the watchdog to mark the embedder failed",
    )
    base = service.base
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{base}/ws") as ws:
        assert (await ws.receive_json(timeout=WAIT))["type"] == "hello"
        await request(ws, "sub", "subscribe", {"events": []})
        reset = await request(ws, "r1", "reset_component", {"component": "embedder"})
        assert reset["type"] == "reset_component_result", reset
        assert reset["data"]["component"] == "embedder"
        assert reset["data"]["status"] == "unknown"  # supervision resumes from scratch
        assert reset["data"]["consecutive_failures"] == 0 and reset["data"]["restarts"] == 0

        unknown = await request(ws, "r2", "reset_component", {"component": "gpu"})
        assert unknown["type"] == "error"
        assert unknown["data"]["code"] == "invalid_params"
        assert "gpu" in unknown["data"]["message"] and "embedder" in unknown["data"]["message"]

        bad = await request(ws, "r3", "reset_component", {"component": "../llm"})
        assert bad["data"]["code"] == "invalid_params"
        health = await request(ws, "r4", "get_health_status", {})  # the connection lives on
        assert health["type"] == "get_health_status_result"


async def test_without_a_token_only_loopback_host_names_may_connect(service: Service) -> None:
    base = service.base
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{base}/ws", headers={"Host": "rebound.example"})
        assert info.value.status == 403
        port = base.rsplit(":", 1)[1]
        async with session.ws_connect(f"{base}/ws", headers={"Host": f"localhost:{port}"}) as ws:
            assert (await ws.receive_json(timeout=WAIT))["type"] == "hello"


async def test_a_client_that_never_reads_does_not_slow_turns(service: Service) -> None:
    """Turns answer while a subscriber reads nothing; whatever it misses is counted, not hidden.

    Its receive window is tiny, but on loopback the server's socket buffers still absorb about
    3 MB of frames before the hub's bounded queue (256) even fills, far more than 30 turns
    make, so whether anything is dropped here is up to the kernel. What is deterministic, and
    asserted: every turn answers, the connection stays open, and once the client reads, each
    frame it missed is a ``seq`` gap counted in ``coda_debug_ws_events_dropped_total``.
    Overflow itself is driven in-process (tests/test_ws_server.py, queue_size=32).
    """

    def tiny_receive_buffer(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    base = service.base
    before = dropped_total(service)
    connector = aiohttp.TCPConnector(socket_factory=tiny_receive_buffer)
    async with (
        aiohttp.ClientSession(connector=connector, read_bufsize=1024) as session,
        session.ws_connect(f"{base}/ws") as stalled,  # subscribed to every event
    ):
        statuses = []
        for i in range(TURNS):  # meanwhile the client reads nothing
            turn = await asyncio.to_thread(
                requests.post,
                f"{base}/v1/turns",
                json={"text": f"Turn number {i}: tell me something.", "session_id": "stall"},
                timeout=WAIT,
            )
            statuses.append(turn.status_code)
        assert statuses == [200] * TURNS
        assert not stalled.closed

        # Now read everything up to the answer of a marker command sent after the turns.
        await stalled.send_json({"type": "get_health_status", "id": "marker", "data": {}})
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["id"] != "marker":
            frames.append(await stalled.receive_json(timeout=WAIT))
            SERVER_MESSAGE.validate(frames[-1])
        seqs = [f["seq"] for f in frames]
        assert seqs == sorted(set(seqs)) and seqs[0] == 1 and frames[0]["type"] == "hello"
        gaps = seqs[-1] - len(seqs)
        assert gaps == dropped_total(service) - before  # each missed frame was counted
        ends = [
            f
            for f in frames
            if f["type"] == "conversation_end" and f["data"]["session_id"] == "stall"
        ]
        assert len(ends) + gaps >= TURNS  # every turn's end arrived or was counted as dropped
