"""The debug WebSocket end to end: a real aiohttp server on 127.0.0.1, real WebSocket clients.

Every frame a client receives is validated against the published schema
(coda_otel/ws/schemas/ws-messages.json) and its ``seq`` checked. ``FakeControl`` stands in for the
application's DebugControl; its turns push StageEvents through the hub from a worker thread,
as the pipeline debugger does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from coda_otel.events import ConversationEvent, StageEvent
from coda_otel.files import new_id
from coda_otel.metrics import STAGES, CodaMetrics
from coda_otel.testing import eventually, free_port
from coda_otel.ws.hub import DebugHub
from coda_otel.ws.protocol import COMMANDS
from coda_otel.ws.schema import validator_for
from coda_otel.ws.server import add_debug_ws_route

TOKEN = "test-token-0123456789abcdef"
SERVER_MESSAGE = validator_for("server_message")
WAIT = 10.0  # hang guard only; nothing asserts on time


class FakeControl:
    """A DebugControl whose turns emit stage events from a worker thread."""

    def __init__(self) -> None:
        self.hub: DebugHub | None = None
        self.features = {"tracing": True, "snapshots": True, "cache": True}
        self.faults_allowed = True
        self.gate: asyncio.Event | None = None
        self.turns = 0
        self.component_status = {"stt": "failed", "llm": "healthy"}

    async def enable_debugging(self, feature: str, enabled: bool) -> Mapping[str, Any]:
        for name in self.features if feature == "all" else [feature]:
            self.features[name] = enabled
        return {"features": dict(self.features)}

    async def take_memory_snapshot(self) -> Mapping[str, Any]:
        summary = {"snapshot_id": new_id("snap"), "trigger": "manual", "counts": {"turns": 2}}
        assert self.hub is not None
        await asyncio.to_thread(self.hub.on_memory_snapshot, summary)  # the emitter's thread
        return summary

    async def get_cache_stats(self) -> Mapping[str, Any]:
        stats = {
            "hits": 3,
            "misses": 1,
            "hit_rate": 0.75,
            "time_saved_ms": 12.5,
            "odd": float("nan"),
        }
        return {"stats": stats, "recommendations": [{"cache": "embedding", "message": "ok"}]}

    async def get_health_status(self) -> Mapping[str, Any]:
        return {"overall_health": "healthy", "components": {"llm": {"status": "healthy"}}}

    async def run_text_turn(self, text: str, session_id: str | None) -> Mapping[str, Any]:
        if text == "whose trace?":  # the context the turn runs under (a caller's, if given)
            caller = trace.get_current_span().get_span_context()
            return {"trace_id": format(caller.trace_id, "032x"), "valid": caller.is_valid}
        if text == "boom":
            raise RuntimeError("secret user text must not leak")
        if text == "bad":
            raise ValueError("the pipeline refused this input")
        if self.gate is not None:
            await self.gate.wait()
        self.turns += 1
        hub, turn = self.hub, self.turns
        assert hub is not None
        conv = emit_turn(hub, turn, session_id, len(text))
        await asyncio.to_thread(conv)
        return {"conversation_id": f"conv-{turn}", "turn": turn, "response": "echo"}

    async def inject_fault(self, component: str, fault: str) -> Mapping[str, Any]:
        if not self.faults_allowed:
            raise PermissionError("fault injection is disabled")
        if component not in {"stt", "llm", "tts"} or fault not in {"crash", "hang"}:
            raise ValueError(f"unknown component or fault: {component}/{fault}")
        return {"component": component, "fault": fault, "injected": True}

    async def reset_component(self, component: str) -> Mapping[str, Any]:
        if component not in self.component_status:
            known = ", ".join(sorted(self.component_status))
            raise ValueError(f"unknown component {component!r}; known: {known}")
        self.component_status[component] = "unknown"
        return {"component": component, "status": "unknown", "consecutive_failures": 0}


def stage_event(turn: int, stage: str, session_id: str | None = None, size: int = 10) -> StageEvent:
    return StageEvent(
        conversation_id=f"conv-{turn}",
        session_id=session_id,
        turn=turn,
        stage=stage,
        status="ok",
        started_at=time.time(),
        duration_s=0.0125,
        input_size=size,
        output_size=size * 2,
        trace_id=f"{turn:032x}",
        span_id=f"{turn:016x}",
    )


def emit_turn(hub: DebugHub, turn: int, session_id: str | None, size: int) -> Callable[[], None]:
    def run() -> None:
        events = tuple(stage_event(turn, s, session_id, size) for s in STAGES)
        for ev in events:
            hub.on_stage_end(ev)
        hub.on_conversation_end(
            ConversationEvent(
                conversation_id=f"conv-{turn}",
                session_id=session_id,
                turn=turn,
                status="ok",
                started_at=time.time(),
                duration_s=0.0625,
                trace_id=f"{turn:032x}",
                span_id=f"{turn:016x}",
                stages=events,
            )
        )

    return run


class Client:
    """A real aiohttp WebSocket client that validates and sequence-checks every frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seq = 0
        self.n = 0

    async def recv(self) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), WAIT)
        assert msg.type == WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        frame = json.loads(msg.data)
        SERVER_MESSAGE.validate(frame)
        assert frame["seq"] > self.seq
        self.seq = frame["seq"]
        return dict(frame)

    async def send(self, mtype: str, data: dict[str, Any] | None = None, **kw: Any) -> str:
        self.n += 1
        rid = kw.get("rid", f"r{self.n}")
        body = {"type": mtype, "id": rid, **({"data": data} if data is not None else {})}
        await self.ws.send_str(json.dumps(body))
        return rid

    async def reply(self, rid: str | int | None) -> dict[str, Any]:
        """The next result/error with id ``rid``, skipping events."""
        while True:
            frame = await self.recv()
            if frame["type"].endswith("_result") or frame["type"] == "error":
                assert frame["id"] == rid, frame
                return frame

    async def request(self, mtype: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.reply(await self.send(mtype, data))

    async def until(self, mtype: str) -> dict[str, Any]:
        while (frame := await self.recv())["type"] != mtype:
            pass
        return frame


Server = Callable[..., Awaitable[tuple[str, DebugHub, FakeControl, CodaMetrics]]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    runners: list[web.AppRunner] = []

    async def start(**kw: Any) -> tuple[str, DebugHub, FakeControl, CodaMetrics]:
        metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
        control = FakeControl()
        hub_kw = {
            k: kw.pop(k)
            for k in list(kw)
            if k
            in {"queue_size", "cache_stats_interval", "health_interval", "allow_fault_injection"}
        }
        hub_kw.setdefault("cache_stats_interval", None)
        hub_kw.setdefault("health_interval", None)
        hub = DebugHub(control, metrics=metrics, **hub_kw)
        control.hub = hub
        app = web.Application()
        add_debug_ws_route(app, hub, **kw)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}/ws", hub, control, metrics

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def connect(session: aiohttp.ClientSession, url: str, **kw: Any) -> Client:
    client = Client(await session.ws_connect(url, **kw))
    hello = await client.recv()
    assert hello["type"] == "hello" and hello["seq"] == 1 and hello["id"] is None
    return client


async def test_hello_lists_the_protocol(server: Server, session: aiohttp.ClientSession) -> None:
    url, hub, _, metrics = await server()
    ws = await session.ws_connect(url)
    hello = json.loads((await ws.receive()).data)
    SERVER_MESSAGE.validate(hello)
    assert hello["data"]["subscribed"] == hello["data"]["events"]
    assert "text_input" in hello["data"]["commands"]
    assert hub.client_count == 1
    assert metrics.registry.get_sample_value("coda_debug_ws_clients") == 1
    await ws.close()
    await eventually(lambda: hub.client_count == 0, WAIT)
    assert metrics.registry.get_sample_value("coda_debug_ws_clients") == 0


async def test_text_input_runs_its_turn_in_the_callers_trace_context(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server()
    c = await connect(session, url)
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    rid = await c.send(
        "text_input", {"text": "whose trace?", "trace_context": {"traceparent": parent}}
    )
    joined = await c.reply(rid)
    assert joined["data"] == {"trace_id": "0af7651916cd43dd8448eb211c80319c", "valid": True}
    rid = await c.send("text_input", {"text": "whose trace?"})
    alone = await c.reply(rid)
    assert alone["data"]["valid"] is False  # no carrier: no caller's context leaks in


async def test_text_input_runs_a_turn_whose_stage_events_stream(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server()
    c = await connect(session, url)
    secret = "my name is Ada and I live in Lisbon"
    rid = await c.send("text_input", {"text": secret, "session_id": "sess-1"})
    frames = []
    while not frames or frames[-1]["type"] != "text_input_result":
        frames.append(await c.recv())
    assert frames[-1]["id"] == rid and frames[-1]["data"]["turn"] == 1
    stages = [f["data"] for f in frames if f["type"] == "pipeline_stage"]
    assert [s["stage"] for s in stages] == list(STAGES)
    first = stages[0]
    assert first["conversation_id"] == "conv-1" and first["session_id"] == "sess-1"
    assert first["duration_ms"] == 12.5 and first["input_size"] == len(secret)
    assert first["trace_id"] == f"{1:032x}" and first["span_id"] == f"{1:016x}"
    assert all(f["id"] is None for f in frames[:-1])
    (end,) = [f["data"] for f in frames if f["type"] == "conversation_end"]
    assert [s["stage"] for s in end["stages"]] == list(STAGES) and end["duration_ms"] == 62.5
    assert not any("Lisbon" in json.dumps(f) for f in frames[:-1])  # events carry no content


async def test_every_command_is_answered_with_its_id(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, _, control, _ = await server(allow_fault_injection=True)
    c = await connect(session, url)

    r = await c.request("enable_debugging", {"feature": "cache", "enabled": False})
    assert r["type"] == "enable_debugging_result" and control.features["cache"] is False
    r = await c.request("enable_debugging", {"feature": "all", "enabled": True})
    assert r["data"]["features"] == {"tracing": True, "snapshots": True, "cache": True}

    rid = await c.send("take_memory_snapshot")
    event = await c.until("memory_snapshot")  # published by the emitter's thread
    result = await c.reply(rid)
    assert result["data"]["snapshot_id"] == event["data"]["snapshot_id"]

    r = await c.request("get_cache_stats")
    assert r["type"] == "get_cache_stats_result" and r["data"]["stats"]["hit_rate"] == 0.75
    assert r["data"]["stats"]["odd"] is None  # NaN is not JSON; it is sent as null
    assert r["data"]["recommendations"][0]["cache"] == "embedding"

    r = await c.request("get_health_status")
    assert r["type"] == "get_health_status_result" and r["data"]["overall_health"] == "healthy"

    r = await c.request("inject_fault", {"component": "llm", "fault": "crash"})
    assert r["type"] == "inject_fault_result" and r["data"]["injected"] is True

    r = await c.request("subscribe", {"events": ["health_status", "cache_stats"]})
    assert r["type"] == "subscribe_result"
    assert r["data"]["events"] == ["cache_stats", "health_status"]

    numeric = await c.reply(await c.send("get_health_status", rid=42))
    assert numeric["id"] == 42


async def test_reset_component_re_enables_a_component_or_names_the_known_ones(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, _, control, _ = await server()  # an operator action: no fault injection needed
    c = await connect(session, url)
    r = await c.request("reset_component", {"component": "stt"})
    assert r["type"] == "reset_component_result"
    assert r["data"] == {"component": "stt", "status": "unknown", "consecutive_failures": 0}
    assert control.component_status["stt"] == "unknown"
    r = await c.request("reset_component", {"component": "gpu"})
    assert r["type"] == "error" and r["data"]["code"] == "invalid_params"
    assert r["data"]["message"] == "unknown component 'gpu'; known: llm, stt"
    r = await c.request("reset_component", {})
    assert r["data"]["code"] == "invalid_params" and "component" in r["data"]["message"]
    assert (await c.request("get_health_status"))["type"] == "get_health_status_result"


async def test_subscribe_filters_events(server: Server, session: aiohttp.ClientSession) -> None:
    url, hub, *_ = await server()
    c = await connect(session, url)
    await c.request("subscribe", {"events": ["health_status"]})
    hub.on_stage_end(stage_event(1, "llm"))
    hub.on_memory_snapshot({"snapshot_id": "snap-1"})
    hub.publish_health_status({"overall_health": "degraded", "components": {}})
    frame = await c.recv()
    assert frame["type"] == "health_status" and frame["data"]["overall_health"] == "degraded"
    await c.request("subscribe", {"events": []})
    hub.publish_health_status({"overall_health": "healthy", "components": {}})
    r = await c.request("get_health_status")  # the next frame is the answer: no event came
    assert r["seq"] == frame["seq"] + 2


async def test_cache_stats_and_health_are_pushed_periodically(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server(cache_stats_interval=0.05, health_interval=0.05)
    c = await connect(session, url)
    cache = await c.until("cache_stats")
    assert cache["id"] is None and cache["data"]["stats"]["hits"] == 3
    assert cache["data"]["recommendations"]
    health = await c.until("health_status")
    assert health["data"]["components"]["llm"]["status"] == "healthy"


async def test_fault_injection_is_forbidden_unless_enabled(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, _, control, _ = await server()  # allow_fault_injection defaults to False
    c = await connect(session, url)
    r = await c.request("inject_fault", {"component": "llm", "fault": "crash"})
    assert r["data"]["code"] == "forbidden" and "--allow-fault-injection" in r["data"]["message"]

    url, _, control, _ = await server(allow_fault_injection=True)
    c = await connect(session, url)
    r = await c.request("inject_fault", {"component": "gpu", "fault": "crash"})
    assert r["data"] == {
        "code": "invalid_params",
        "message": "unknown component or fault: gpu/crash",
    }
    control.faults_allowed = False  # the application's own switch
    r = await c.request("inject_fault", {"component": "llm", "fault": "crash"})
    assert r["data"]["code"] == "forbidden"


async def test_a_failing_command_gets_an_error_and_the_connection_lives(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server()
    c = await connect(session, url)
    r = await c.request("text_input", {"text": "boom"})
    assert r["data"] == {"code": "internal_error", "message": "text_input failed: RuntimeError"}
    r = await c.request("text_input", {"text": "bad"})
    assert r["data"] == {"code": "invalid_params", "message": "the pipeline refused this input"}
    assert (await c.request("text_input", {"text": "hello"}))["type"] == "text_input_result"


@pytest.mark.parametrize(
    ("frame", "code", "rid"),
    [
        ("{not json", "bad_json", None),
        ("42", "bad_message", None),
        ('{"type": "self_destruct", "id": "x1"}', "unknown_type", "x1"),
        (
            '{"type": "enable_debugging", "id": 5, "data": {"feature": 1, "enabled": true}}',
            "invalid_params",
            5,
        ),
        ('{"type": "subscribe", "id": "s", "data": {}}', "invalid_params", "s"),
        ('{"type": "get_cache_stats", "id": {"nested": 1}}', "bad_message", None),
        (
            json.dumps({"type": "text_input", "id": "big", "data": {"text": "x" * 70_000}}),
            "too_large",
            None,
        ),
        (json.dumps({"type": "text_input", "data": {"text": "é" * 30_000}}), "too_large", None),
    ],
)
async def test_bad_frames_get_errors_and_the_connection_stays_usable(
    server: Server, session: aiohttp.ClientSession, frame: str, code: str, rid: object
) -> None:
    url, *_ = await server()
    c = await connect(session, url)
    await c.ws.send_str(frame)
    r = await c.reply(rid)
    assert r["type"] == "error" and r["data"]["code"] == code and r["data"]["message"]
    assert (await c.request("get_health_status"))["type"] == "get_health_status_result"


async def test_binary_frames_are_refused_politely(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server()
    c = await connect(session, url)
    await c.ws.send_bytes(b'{"type": "get_health_status"}')
    assert (await c.reply(None))["data"]["code"] == "bad_message"
    assert (await c.request("get_health_status"))["type"] == "get_health_status_result"


async def test_a_frame_beyond_the_transport_limit_closes_with_1009(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, hub, *_ = await server(max_message_bytes=1024)  # transport limit: 16 KiB
    c = await connect(session, url)
    await c.ws.send_str("x" * 20_000)
    msg = await asyncio.wait_for(c.ws.receive(), WAIT)
    assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    await eventually(lambda: hub.client_count == 0, WAIT)


async def test_a_client_sending_too_fast_is_rate_limited(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server(rate=(0.001, 3))
    c = await connect(session, url)
    rids = [await c.send("get_health_status") for _ in range(5)]
    replies = {}
    while len(replies) < 5:  # errors are immediate, results come when the command ran
        frame = await c.recv()
        replies[frame["id"]] = frame
    assert [replies[r]["type"] for r in rids[:3]] == ["get_health_status_result"] * 3
    assert [replies[r]["data"]["code"] for r in rids[3:]] == ["rate_limited"] * 2
    assert "per second" in replies[rids[3]]["data"]["message"]


async def test_too_many_running_commands_answer_busy(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, _, control, _ = await server(max_inflight=1)
    control.gate = asyncio.Event()
    c = await connect(session, url)
    slow = await c.send("text_input", {"text": "slow"})
    busy = await c.reply(await c.send("get_health_status"))
    assert busy["data"]["code"] == "busy"
    control.gate.set()
    assert (await c.reply(slow))["type"] == "text_input_result"
    assert (await c.request("get_health_status"))["type"] == "get_health_status_result"


async def test_two_clients_each_get_the_events_and_their_own_answers(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server()
    a, b = await connect(session, url), await connect(session, url)
    rid = await a.send("text_input", {"text": "hello there"})
    got_b = [await b.recv() for _ in range(len(STAGES) + 1)]
    assert [f["data"].get("stage") for f in got_b[:-1]] == list(STAGES)
    assert got_b[-1]["type"] == "conversation_end"
    assert (await a.reply(rid))["type"] == "text_input_result"
    r = await b.request("get_cache_stats")
    assert r["type"] == "get_cache_stats_result" and r["seq"] == len(STAGES) + 3


async def test_a_client_that_never_reads_does_not_hold_up_publishing(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, hub, _, metrics = await server(queue_size=32)
    stalled = await session.ws_connect(url)  # never reads again
    other = await connect(session, url)
    await other.request("subscribe", {"events": []})  # only the stalled client can overflow

    def dropped() -> float:
        return metrics.registry.get_sample_value("coda_debug_ws_events_dropped_total") or 0.0

    def publish_batch(start: int) -> None:  # from a worker thread, like the pipeline's hooks
        for i in range(start, start + 2000):
            hub.on_stage_end(stage_event(i, "llm", size=4000))

    batches = 0
    while dropped() == 0:  # publishing keeps returning while the stalled client's queue overflows
        assert batches < 200, "the stalled client never overflowed its queue"
        await asyncio.to_thread(publish_batch, batches * 2000)
        batches += 1
    assert hub.client_count == 2

    before = other.seq
    await other.request("subscribe", {"events": ["pipeline_stage"]})
    await asyncio.to_thread(hub.on_stage_end, stage_event(10**6, "tts"))
    frame = await other.recv()  # the other client is served at once, with nothing lost
    assert frame["data"]["turn"] == 10**6 and frame["seq"] == before + 2
    await stalled.close()


async def test_a_token_is_required_when_configured(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server(token=TOKEN)
    for kw in (
        {},
        {"headers": {"Authorization": "Bearer wrong-token-0123456789abcd"}},
        {"headers": {"Authorization": f"Basic {TOKEN}"}},
        {"headers": {"Authorization": "Bearer "}},
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, **kw)
        assert info.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url + "?token=short")
    assert info.value.status == 401
    async with session.get(url) as resp:  # the 401 body says what to do
        assert resp.status == 401 and "Bearer" in (await resp.json())["error"]["message"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")

    by_header = await connect(session, url, headers={"Authorization": f"Bearer {TOKEN}"})
    by_query = await connect(session, f"{url}?token={TOKEN}")
    for c in (by_header, by_query):
        assert (await c.request("get_health_status"))["type"] == "get_health_status_result"


async def test_a_browser_can_send_the_token_as_a_subprotocol(
    server: Server, session: aiohttp.ClientSession
) -> None:
    """What the console page does: the WebSocket API cannot set Authorization."""
    url, *_ = await server(token=TOKEN)
    encoded = base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("=")
    for offered in ("coda-token.d3Jvbmc", "coda-token.!!!", f"coda-token.{encoded}x"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, protocols=("coda-debug", offered))
        assert info.value.status == 401
    client = await connect(session, url, protocols=("coda-debug", f"coda-token.{encoded}"))
    assert client.ws.protocol == "coda-debug"  # the token is never echoed back
    assert (await client.request("get_health_status"))["type"] == "get_health_status_result"


async def test_browser_origins_are_checked(server: Server, session: aiohttp.ClientSession) -> None:
    url, *_ = await server(allowed_origins=["http://dashboard.example:3000/"])
    for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, headers={"Origin": origin})
        assert info.value.status == 403
    same_host = url.removesuffix("/ws")
    for origin in (same_host, "http://Dashboard.example:3000"):
        c = await connect(session, url, headers={"Origin": origin})
        assert (await c.request("get_cache_stats"))["type"] == "get_cache_stats_result"


async def test_plain_http_gets_a_clear_answer(
    server: Server, session: aiohttp.ClientSession
) -> None:
    url, *_ = await server()
    async with session.get(url) as resp:
        assert resp.status == 426 and "WebSocket" in (await resp.json())["error"]["message"]


def test_a_short_token_is_refused_when_mounting() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        add_debug_ws_route(web.Application(), DebugHub(), token="abc")


async def test_publishing_without_clients_or_loop_is_a_no_op() -> None:
    hub = DebugHub()
    hub.on_stage_end(stage_event(1, "stt"))  # not started: nothing to do, nothing raised
    await asyncio.to_thread(hub.on_stage_end, stage_event(1, "stt"))
    with pytest.raises(ValueError, match="unknown event type"):
        hub.publish("gossip", {})
    with pytest.raises(ValueError, match="queue_size"):
        DebugHub(queue_size=0)


async def test_shutdown_closes_clients_and_stops_the_hub(session: aiohttp.ClientSession) -> None:
    hub = DebugHub(FakeControl(), cache_stats_interval=0.05, health_interval=0.05)
    app = web.Application()
    add_debug_ws_route(app, hub)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    c = await connect(session, f"http://127.0.0.1:{port}/ws")
    await runner.cleanup()
    while (msg := await asyncio.wait_for(c.ws.receive(), WAIT)).type == WSMsgType.TEXT:
        pass
    assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
    assert hub.client_count == 0


# --- fuzz ---------------------------------------------------------------------------------

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
_json = st.recursive(
    _leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
_field_values = _json | st.sampled_from(
    ["all", "cache", True, ["pipeline_stage"], ["bogus"], "llm", "crash", "s-1", "../x", " "]
)
_commandish = st.fixed_dictionaries(
    {"type": st.sampled_from([*COMMANDS, "nope"]) | st.text(max_size=12)},
    optional={
        "id": _json,
        "data": st.dictionaries(
            st.sampled_from(
                ["feature", "enabled", "events", "text", "session_id", "component", "fault", "zzz"]
            ),
            _field_values,
            max_size=3,
        )
        | _json,
        "extra": _json,
    },
)
_frames = st.one_of(st.text(max_size=300), _json.map(json.dumps), _commandish.map(json.dumps))


def _expected_id(frame: str) -> object:
    try:
        raw = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    rid = raw.get("id") if isinstance(raw, dict) else None
    if (
        isinstance(rid, bool)
        or not isinstance(rid, str | int)
        or (isinstance(rid, str) and len(rid) > 128)
    ):
        return None
    return rid


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(_frames, min_size=1, max_size=8))
async def test_fuzzed_frames_never_crash_the_server_and_always_get_an_answer(
    frames: list[str],
) -> None:
    hub = DebugHub(
        FakeControl(), cache_stats_interval=None, health_interval=None, allow_fault_injection=True
    )
    assert isinstance(hub.control, FakeControl)
    hub.control.hub = hub
    app = web.Application()
    add_debug_ws_route(app, hub, rate=(1e6, 10**6))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as s:
            c = await connect(s, f"http://127.0.0.1:{port}/ws")
            for frame in frames:
                await c.ws.send_str(frame)
                answer = await c.reply(_expected_id(frame))  # validated against the schema
                assert (
                    answer["type"] == "error"
                    or answer["type"] == f"{json.loads(frame)['type']}_result"
                )
            assert (await c.request("get_health_status"))["type"] == "get_health_status_result"
    finally:
        await runner.cleanup()
