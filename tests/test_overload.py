"""More turns than the assistant can serve, against a real ``coda-lite serve``: the extra ones
are refused at once with 503 ``overloaded`` and ``Retry-After`` (over HTTP) or an
``overloaded`` error (over the WebSocket), counted, while liveness keeps answering.

One turn may run and none may wait; the running turn asks the test's model server a question
it never answers ("hang please"), so it holds its slot until its 2 s llm deadline passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import aiohttp
import pytest

from tests.fake_openai import FakeOpenAI
from tests.service_harness import Service, coda_service

pytestmark = [pytest.mark.slow]

T = TypeVar("T")

CONFIG = (
    "llm:\n  backend: openai\n  url: {url}\n  model: fake\n"
    "tts:\n  backend: none\n"
    "pipeline:\n  llm_timeout: 2\n  max_running_turns: 1\n  max_waiting_turns: 0\n"
    "  queue_timeout: 1\n"
    "telemetry:\n  llm_cache_size: 0\n  health_interval: 0.5\n"
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with FakeOpenAI() as model:
        home = tmp_path_factory.mktemp("coda-overload")
        with coda_service(home, config=CONFIG.format(url=model.url)) as service:
            yield service


def _while_busy(service: Service, query: Callable[[], T]) -> T:
    """``query()``'s result, run while a hung turn holds the only slot; the hung turn's own
    answer is its deadline (504)."""
    # a model that timed out is unready until a real call succeeds: each test starts ready
    service.eventually(lambda: service.get("/health/ready").status_code == 200, what="ready")
    with ThreadPoolExecutor(max_workers=1) as pool:
        hung = pool.submit(service.turn, "hang please", session_id="hog")
        service.eventually(
            lambda: service.metric("coda_stage_inflight_oldest_seconds") > 0,
            what="the hung turn to be running",
        )
        result = query()
        assert hung.result(timeout=60).status_code == 504
    return result


def test_a_turn_beyond_capacity_is_refused_at_once_with_retry_after(service: Service) -> None:
    shed_before = service.metric('coda_turns_shed_total{reason="queue_full"}')
    refused, live, ready = _while_busy(
        service,
        lambda: (service.turn("Hello?"), service.get("/health/live"), service.get("/health/ready")),
    )
    # the queue is full (1 running, 0 may wait): not ready for more, still alive
    assert ready.status_code == 503 and ready.json()["error"]["code"] == "overloaded", ready.text
    # the slot is free again: no longer overloaded (the llm may be unready for a while: its
    # call timed out, and it is ready again once a real call succeeds, below)
    after = service.get("/health/ready")
    assert after.json()["overloaded"] is False, after.text
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "overloaded" and error["reason"] == "queue_full"
    assert int(refused.headers["Retry-After"]) >= 1
    assert live.status_code == 200
    assert service.metric('coda_turns_shed_total{reason="queue_full"}') == shed_before + 1
    assert "coda_turn_queue_depth 0.0" in service.metrics()
    assert service.turn("Hello again.").status_code == 200  # capacity is back
    service.eventually(lambda: service.get("/health/ready").status_code == 200, what="ready")


async def test_a_websocket_turn_beyond_capacity_gets_an_overloaded_error(
    service: Service,
) -> None:
    import asyncio

    async def ws_turn() -> dict[str, object]:
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws")) as ws:
            assert (await ws.receive_json(timeout=30))["type"] == "hello"
            await ws.send_json({"type": "text_input", "id": "t", "data": {"text": "Hi?"}})
            while True:
                msg: dict[str, object] = await ws.receive_json(timeout=30)
                if msg.get("id") == "t":
                    return msg

    msg = await asyncio.to_thread(_while_busy, service, lambda: asyncio.run(ws_turn()))
    assert msg["type"] == "error", msg
    data = msg["data"]
    assert (
        isinstance(data, dict)
        and data["code"] == "overloaded"
        and "retry after" in str(data["message"])
    )
