"""The trace browser's routes over real HTTP, behind the service's security middleware.

The store is fed real SDK spans (tests/test_trace_store.py's ``Turns``); the page itself is
driven in Chromium by tests/test_console_traces.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web

from coda_lite.config import ConfigError, load_config
from coda_otel.console import add_trace_routes
from coda_otel.files import atomic_write_json
from coda_otel.tracing.store import TraceStore
from coda_otel.web.security import debug_security
from tests.prometheus_harness import wait_until
from tests.service_harness import coda_service
from tests.support import free_port, require_tool, serving
from tests.test_trace_store import Turns

TOKEN = "trace-routes-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Start = Callable[..., Awaitable[str]]


@pytest.fixture
def turns(tmp_path: Path) -> Any:
    t = Turns(TraceStore(tmp_path / "turns.sqlite3"))
    yield t
    t.close()
    t.store.close()


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    async with AsyncExitStack() as stack:

        async def run(store: TraceStore | None, token: str | None = None) -> str:
            app = web.Application(middlewares=[debug_security(token=token)])
            add_trace_routes(app, store, logs_dir=tmp_path / "logs")
            return await stack.enter_async_context(serving(app))

        yield run


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_search_and_open_need_the_token(start: Start, turns: Turns) -> None:
    trace_id = turns.turn("s1", 1)
    base = await start(turns.store, token=TOKEN)
    for path in ("/debug/traces", f"/debug/traces/{trace_id}", f"/debug/traces/{trace_id}/log"):
        status, body = await get(base + path)
        assert status == 401 and body["error"]["code"] == "unauthorized", path
    status, body = await get(f"{base}/debug/traces?session_id=s1&limit=5", AUTH)
    assert status == 200 and [t["trace_id"] for t in body["traces"]] == [trace_id]
    status, body = await get(f"{base}/debug/traces/{trace_id}", AUTH)
    assert status == 200
    root = body["spans"][0]
    assert root["name"] == "conversation" and root["offset_ms"] == 0.0
    assert root["attributes"]["session.id"] == "s1"
    assert body["summary"]["status"] == "ok"


async def test_without_a_token_only_a_loopback_host_is_served(start: Start, turns: Turns) -> None:
    base = await start(turns.store)
    status, body = await get(f"{base}/debug/traces", {"Host": "evil.example"})
    assert status == 403 and body["error"]["code"] == "forbidden_host"


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=bogus", "status must be one of"),
        ("min_duration_ms=-1", "min_duration_ms"),
        ("min_duration_ms=abc", "min_duration_ms"),
        ("min_duration_ms=nan", "min_duration_ms"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since must be ISO 8601"),
        ("session_id=../etc", "session_id"),
        ("sessionid=s1", "unknown parameter"),
    ],
)
async def test_bad_parameters_get_400_in_the_one_error_shape(
    start: Start, turns: Turns, query: str, says: str
) -> None:
    base = await start(turns.store)
    status, body = await get(f"{base}/debug/traces?{query}")
    assert status == 400
    assert body["error"]["code"] == "bad_request" and says in body["error"]["message"]


async def test_unknown_and_malformed_trace_ids(start: Start, turns: Turns) -> None:
    base = await start(turns.store)
    status, body = await get(f"{base}/debug/traces/{'ab' * 16}")
    assert status == 404 and body["error"]["code"] == "unknown_trace"
    status, body = await get(f"{base}/debug/traces/{'ab' * 16}/log")
    assert status == 404 and body["error"]["code"] == "unknown_trace"
    status, body = await get(f"{base}/debug/traces/NOT-A-TRACE")
    assert status == 400 and body["error"]["code"] == "invalid_id"


async def test_since_accepts_iso_and_unix_seconds(start: Start, turns: Turns) -> None:
    old = turns.turn("s", 1)
    new = turns.turn("s", 2)
    base = await start(turns.store)
    start_new = turns.store.summary(new)
    assert start_new is not None
    iso = start_new["start"]
    status, body = await get(f"{base}/debug/traces?since={iso.replace('+', '%2B')}")
    assert status == 200 and [t["trace_id"] for t in body["traces"]] == [new]
    status, body = await get(f"{base}/debug/traces?since=0")
    assert [t["trace_id"] for t in body["traces"]] == [new, old]


async def test_the_log_of_a_turn(start: Start, turns: Turns, tmp_path: Path) -> None:
    trace_id = turns.turn("s", 7)
    base = await start(turns.store)
    status, body = await get(f"{base}/debug/traces/{trace_id}/log")
    assert status == 404 and body["error"]["code"] == "no_log"
    (tmp_path / "logs").mkdir()
    record = {"conversation_id": "c-s-7", "trace_id": trace_id, "stages": []}
    atomic_write_json(tmp_path / "logs" / "pipeline-20261202T000000000000-c-s-7.json", record)
    status, body = await get(f"{base}/debug/traces/{trace_id}/log")
    assert status == 200 and body == record


async def test_with_the_store_off_the_routes_say_so(start: Start) -> None:
    base = await start(None)
    status, body = await get(f"{base}/debug/traces")
    assert status == 404 and body["error"]["code"] == "trace_store_off"


@pytest.mark.slow
def test_the_service_keeps_turns_across_a_restart_with_a_dead_collector(tmp_path: Path) -> None:
    """A real ``coda-lite serve`` exporting to a closed port: the turn is kept locally anyway,
    and is still there after the service restarts."""
    require_tool("espeak-ng")
    env = {
        "OTEL_TRACES_EXPORTER": None,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "CODA_DEBUG_TOKEN": TOKEN,
    }
    with coda_service(tmp_path, env=env) as service:
        base = service.base
        r = requests.post(
            f"{base}/v1/turns", json={"text": "Keep me.", "session_id": "kept"}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        trace_id = r.json()["trace_id"]

        def listed() -> bool:
            got = requests.get(f"{base}/debug/traces?session_id=kept", headers=AUTH, timeout=5)
            return [t["trace_id"] for t in got.json()["traces"]] == [trace_id]

        wait_until(listed, 15, "the turn in the local trace store")
        assert requests.get(f"{base}/debug/traces", timeout=5).status_code == 401
    with coda_service(tmp_path, env=env) as service:
        base = service.base
        assert listed()
        spans = requests.get(f"{base}/debug/traces/{trace_id}", headers=AUTH, timeout=5).json()
        assert {s["name"] for s in spans["spans"]} >= {"conversation", "llm", "tts"}


def test_a_negative_store_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="trace_store_turns must not be negative"):
        load_config(None, {"CODA_TELEMETRY_TRACE_STORE_TURNS": "-1"})
    assert load_config(None, {}).telemetry.trace_store_turns == 1000
