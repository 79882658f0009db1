"""The debug service's access rules, on a real aiohttp server and client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from coda_otel.web.security import debug_security
from tests.support import free_port

TOKEN = "s3cret-token-0123456789"


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def serve(token: str | None) -> tuple[web.AppRunner, str]:
    app = web.Application(
        middlewares=[debug_security(token=token, allowed_origins=["https://ui.example"])]
    )
    app.router.add_get("/metrics", ok)
    app.router.add_get("/health", ok)
    app.router.add_post("/v1/turns", ok)
    app.router.add_post("/debug/faults", ok)
    app.router.add_get("/ws", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def open_service() -> AsyncIterator[str]:
    runner, base = await serve(None)
    yield base
    await runner.cleanup()


@pytest.fixture
async def token_service() -> AsyncIterator[str]:
    runner, base = await serve(TOKEN)
    yield base
    await runner.cleanup()


async def status(method: str, url: str, **kwargs: object) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.request(method, url, **kwargs) as r:  # type: ignore[arg-type]
        return r.status, await r.json()


async def test_without_a_token_loopback_hosts_are_served(open_service: str) -> None:
    for host in ("127.0.0.1:8765", "localhost", "[::1]:8765"):
        code, _ = await status("POST", f"{open_service}/v1/turns", json={}, headers={"Host": host})
        assert code == 200, host


async def test_a_rebound_host_name_is_refused(open_service: str) -> None:
    """DNS rebinding: the page's own name arrives as Host, even though it resolved to us."""
    for path, method in (("/v1/turns", "POST"), ("/ws", "GET"), ("/metrics", "GET")):
        code, body = await status(
            method, f"{open_service}{path}", json={}, headers={"Host": "evil.example:8765"}
        )
        assert code == 403 and body["error"]["code"] == "forbidden_host", path  # type: ignore[index]


async def test_posts_must_be_json(open_service: str) -> None:
    code, body = await status(
        "POST", f"{open_service}/debug/faults", data="component=llm&fault=crash",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert code == 415 and body["error"]["code"] == "unsupported_media_type"  # type: ignore[index]
    code, _ = await status(
        "POST", f"{open_service}/debug/faults", data="{}", headers={"Content-Type": "text/plain"}
    )
    assert code == 415


async def test_foreign_origins_are_refused(open_service: str) -> None:
    code, _ = await status(
        "POST", f"{open_service}/v1/turns", json={}, headers={"Origin": "https://evil.example"}
    )
    assert code == 403
    code, _ = await status(
        "POST", f"{open_service}/v1/turns", json={}, headers={"Origin": "https://ui.example/"}
    )
    assert code == 200


async def test_with_a_token_writes_need_it_and_reads_do_not(token_service: str) -> None:
    assert (await status("GET", f"{token_service}/metrics"))[0] == 200
    assert (await status("GET", f"{token_service}/health"))[0] == 200
    for path in ("/v1/turns", "/debug/faults"):
        code, body = await status("POST", f"{token_service}{path}", json={})
        assert code == 401 and body["error"]["code"] == "unauthorized"  # type: ignore[index]
        wrong = {"Authorization": "Bearer " + "x" * len(TOKEN)}
        assert (await status("POST", f"{token_service}{path}", json={}, headers=wrong))[0] == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert (await status("POST", f"{token_service}{path}", json={}, headers=right))[0] == 200
    # the WebSocket route authenticates itself (it also accepts ?token=)
    assert (await status("GET", f"{token_service}/ws"))[0] == 200


async def test_with_a_token_any_host_name_is_fine(token_service: str) -> None:
    headers = {"Host": "coda.internal:8765", "Authorization": f"Bearer {TOKEN}"}
    assert (await status("POST", f"{token_service}/v1/turns", json={}, headers=headers))[0] == 200
