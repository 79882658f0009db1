"""The console's HTTP side on a real aiohttp server: page, assets, auth, snapshot list and diff.

The page itself is exercised in a real browser by tests/test_console.py; here the routes are
checked with plain HTTP behind the service's security middleware.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coda_otel.console import CONSOLE_OPEN_PATHS, ConsoleSettings, add_console_routes
from coda_otel.console.redact import redact_diff
from coda_otel.sanitize import Sanitizer
from coda_otel.snapshots.diff import diff_snapshots
from coda_otel.snapshots.store import SnapshotStore, build_document
from coda_otel.web.security import OPEN_PATHS, debug_security
from tests.support import free_port

TOKEN = "console-routes-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET_MEMORY = "Reach me at ada@example.com, she said."

Start = Callable[..., Awaitable[str]]


def write_snapshot(store: SnapshotStore, sid: str, memories: list[dict[str, Any]]) -> None:
    state = {
        "short_term": {"turns": [{"turn_id": 1, "role": "user", "content": SECRET_MEMORY}]},
        "long_term": {"memories": memories, "topics": sorted({"contact"} if memories else ())},
    }
    doc = build_document(state, sid, "manual", len(memories), "2026-11-27T10:00:00+00:00")
    store.folder.mkdir(parents=True, exist_ok=True)
    store.path_for(sid).write_text(json.dumps(doc), encoding="utf-8")


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []
    store = SnapshotStore(tmp_path / "snapshots")
    write_snapshot(store, "snap-a", [])
    memory = {"id": "m1", "content": SECRET_MEMORY, "importance": 0.7, "topics": ["contact"]}
    write_snapshot(store, "snap-b", [memory])

    async def run(token: str | None = None, **settings: Any) -> str:
        app = web.Application(
            middlewares=[debug_security(token=token, open_paths=(*OPEN_PATHS, *CONSOLE_OPEN_PATHS))]
        )
        add_console_routes(
            app, ConsoleSettings(snapshots=store, token_required=token is not None, **settings)
        )
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield run
    for runner in runners:
        await runner.cleanup()


async def test_the_page_and_its_assets_are_public_and_locked_down(start: Start) -> None:
    base = await start(token=TOKEN)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/debug/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert 'src="assets/app.js"' in await resp.text()
        async with s.get(f"{base}/debug/assets/app.js") as resp:
            assert resp.status == 200 and resp.content_type == "text/javascript"
        async with s.get(f"{base}/debug", allow_redirects=False) as resp:
            assert resp.status == 308 and resp.headers["Location"] == "/debug/"
        async with s.get(f"{base}/debug/console/status") as resp:
            assert (await resp.json())["token_required"] is True
        for name in ("routes.py", "../routes.py", "..%2Froutes.py", "vendor/nothing.js"):
            async with s.get(f"{base}/debug/assets/{name}") as resp:
                assert resp.status in (401, 404), name  # outside the list: never served


async def test_everything_else_needs_the_token(start: Start) -> None:
    base = await start(token=TOKEN, jaeger_url="http://jaeger.local:16686")
    async with aiohttp.ClientSession() as s:
        for path in ("console/config", "console/snapshots", "console/diff?from=snap-a&to=snap-b"):
            async with s.get(f"{base}/debug/{path}") as resp:
                assert resp.status == 401, path
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with s.get(f"{base}/debug/console/config", headers=AUTH) as resp:
            config = await resp.json()
        assert config["jaeger_url"] == "http://jaeger.local:16686"
        assert config["allow_fault_injection"] is False and config["capture_content"] is False


async def test_without_a_token_only_loopback_hosts_are_served(start: Start) -> None:
    base = await start()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/debug/", headers={"Host": "rebound.example"}) as resp:
            assert resp.status == 403
        async with s.get(f"{base}/debug/console/snapshots") as resp:
            ids = [x["snapshot_id"] for x in (await resp.json())["snapshots"]]
            assert sorted(ids) == ["snap-a", "snap-b"]


async def test_a_diff_shows_the_added_memory_redacted(start: Start) -> None:
    base = await start()
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/debug/console/diff?from=snap-a&to=snap-b") as resp:
            diff = await resp.json()
        assert [m["id"] for m in diff["new_memories"]] == ["m1"]
        content = diff["new_memories"][0]["content"]
        assert content == "Reach me at [EMAIL], she said."
        assert diff["topics_added"] == ["contact"] and diff["content"] == "preview (redacted)"
        assert "ada@example.com" not in json.dumps(diff)
        for query, status, code in (
            ("from=snap-a", 400, "bad_request"),
            ("from=snap-a&to=../../etc/passwd", 400, "invalid_id"),
            ("from=snap-a&to=snap-zzz", 404, "unknown_snapshot"),
        ):
            async with s.get(f"{base}/debug/console/diff?{query}") as resp:
                assert resp.status == status
                assert (await resp.json())["error"]["code"] == code


def test_redaction_follows_the_capture_setting() -> None:
    long = "x" * 300 + " ada@example.com"
    a = {"short_term": {"turns": []}, "long_term": {"memories": [], "topics": []}}
    b = {
        "short_term": {"turns": []},
        "long_term": {"memories": [{"id": "m", "content": long}], "topics": []},
    }
    diff = diff_snapshots(a, b)
    preview = redact_diff(diff, Sanitizer(capture_content=False))["new_memories"][0]["content"]
    full = redact_diff(diff, Sanitizer(capture_content=True))["new_memories"][0]["content"]
    assert len(preview) < 120 and "ada@" not in preview
    assert full.endswith("[EMAIL]") and len(full) > 300
    assert diff["new_memories"][0]["content"] == long  # the input is not modified
