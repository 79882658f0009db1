"""ConnectionLimit on a real aiohttp server: connections beyond the cap are answered by their
request line (liveness 200, anything else 503 overloaded) and closed; closing frees room."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from coda_otel.testing import eventually
from coda_otel.web.connection_limit import ConnectionLimit


async def _hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


@pytest.fixture
async def limited() -> AsyncIterator[tuple[ConnectionLimit, int]]:
    app = web.Application()
    app.router.add_get("/hello", _hello)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    refused: list[int] = []
    limit = ConnectionLimit(runner.server, 2, on_refused=lambda: refused.append(1))
    server = await asyncio.get_running_loop().create_server(limit.protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield limit, port
    finally:
        server.close()
        await runner.cleanup()
    assert len(refused) == limit.refused


async def _exchange(port: int, *pieces: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0.05)  # the request line arrives in pieces
    answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    writer.close()
    return answer


async def test_beyond_the_cap_each_connection_is_answered_by_its_request_line(
    limited: tuple[ConnectionLimit, int],
) -> None:
    limit, port = limited
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    await eventually(lambda: limit.open == 2, what="two connections held")

    live = await _exchange(port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert live.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(live.split(b"\r\n\r\n", 1)[1]) == {"status": "alive"}

    head = await _exchange(port, b"HEAD /health/live HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")

    other = await _exchange(port, b"GET /hel", b"lo HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = other.split(b"\r\n\r\n", 1)
    assert status.startswith(b"HTTP/1.1 503 ") and b"\r\nRetry-After: 1\r\n" in status
    error = json.loads(body)["error"]
    assert error["code"] == "overloaded" and "maximum of 2 connections" in error["message"]
    assert limit.refused == 3 and limit.open == 2  # refusals are not held

    for _, writer in held:
        writer.close()
    await eventually(lambda: limit.open == 0, what="closed connections uncounted")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/hello") as resp,
    ):
        assert resp.status == 200 and await resp.json() == {"hello": "world"}


async def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConnectionLimit(web.Server(_hello), 0)
