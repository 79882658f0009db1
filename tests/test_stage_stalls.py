"""A stage stuck while it runs is reported while it runs: a real `coda-lite serve` whose
OpenAI-compatible model server (a loopback server started here) answers its health probe but
stops streaming after its first sentence, and a real Prometheus scraping the service.

While the turn is still waiting on the model: the WebSocket sends ``stage_stalled`` for the
llm stage, ``coda_stage_stalls_total{stage="llm"}`` moves, the oldest in-flight stage's age
grows, and the ``CodaStageStalled`` alert fires. Once the server resumes, the turn completes
and its trace and log say the llm stage stalled.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from coda_otel.pipeline.conversation_log import read_log
from coda_otel.ws.schema import validator_for
from tests.prometheus_harness import (
    ALERTS_YML,
    SCRAPE_JOB,
    ManagedProcess,
    PrometheusAPI,
    prometheus_argv,
    prometheus_test_config,
    rules_with_short_for,
    wait_until,
)
from tests.service_harness import coda_service
from tests.support import free_port, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.stack]

SERVER_MESSAGE = validator_for("server_message")
BUDGET_S = 1.0


class StallingModel:
    """An OpenAI-compatible server in a thread: ``/v1/models`` answers, and each streamed
    answer sends one sentence, then waits until :meth:`resume` before it finishes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.resumed = asyncio.Event()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def models(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "stalling", "object": "model"}]}
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(data: dict[str, Any] | str) -> None:
            text = data if isinstance(data, str) else json.dumps(data)
            await resp.write(f"data: {text}\n\n".encode())

        def delta(text: str) -> dict[str, Any]:
            return {"choices": [{"index": 0, "delta": {"content": text}}]}

        await send(delta("The lighthouse stands. "))
        await self.resumed.wait()  # the stall: the connection is open, nothing comes
        await send(delta("It shines."))
        await send({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7}})
        await send("[DONE]")
        await resp.write_eof()
        return resp

    def __enter__(self) -> StallingModel:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app)
        self.thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def resume(self) -> None:
        self.loop.call_soon_threadsafe(self.resumed.set)

    def __exit__(self, *exc: object) -> None:
        self.resume()
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Stalled:
    stall: dict[str, Any]  # the stage_stalled event
    running_when_stalled: bool
    alert: list[dict[str, Any]]
    oldest_s: float
    stalls_total: float
    turn: dict[str, Any]
    home: Path


async def _stalled_turn(
    base: str, model: StallingModel, prom: PrometheusAPI, procs: list[ManagedProcess]
) -> tuple[dict[str, Any], bool, list[dict[str, Any]], float, float, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{base}/ws") as ws:
        assert (await ws.receive_json(timeout=30))["type"] == "hello"
        await ws.send_json({"type": "subscribe", "id": "s", "data": {"events": ["stage_stalled"]}})
        body = {"text": "Tell me about the lighthouse.", "session_id": "stuck"}
        post = asyncio.create_task(session.post(f"{base}/v1/turns", json=body, timeout=120))
        while (msg := await ws.receive_json(timeout=60))["type"] != "stage_stalled":
            pass
        SERVER_MESSAGE.validate(msg)
        running = not post.done()

        def firing() -> list[dict[str, Any]]:
            return [
                a
                for a in prom.alerts()
                if a["labels"]["alertname"] == "CodaStageStalled" and a["state"] == "firing"
            ]

        alert = await asyncio.to_thread(wait_until, firing, 30, "CodaStageStalled", *procs)
        oldest = await asyncio.to_thread(prom.query, "coda_stage_inflight_oldest_seconds")
        stalls = await asyncio.to_thread(prom.query, 'coda_stage_stalls_total{stage="llm"}')
        assert not post.done()  # the turn is still stuck while all of this is seen
        model.resume()
        resp = await post
        assert resp.status == 200, await resp.text()
        return (
            dict(msg["data"]),
            running,
            alert,
            float(oldest[0]["value"][1]),
            float(stalls[0]["value"][1]),
            await resp.json(),
        )


@pytest.fixture(scope="module")
def stalled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stalled]:
    prometheus_bin = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("stalls")
    home = tmp / "coda-home"
    home.mkdir()
    port, prom_port = free_port(), free_port()
    rules = rules_with_short_for(ALERTS_YML, tmp / "alerts.yml")
    prom_config = prometheus_test_config(
        tmp / "prometheus.yml", target=f"127.0.0.1:{port}", rules=rules
    )
    prom_argv = prometheus_argv(prometheus_bin, prom_config, tmp, prom_port)
    with StallingModel() as model:
        config = (
            f"llm:\n  backend: openai\n  url: http://127.0.0.1:{model.port}\n"
            "  model: stalling\n  timeout: 60\n"
            f"pipeline:\n  llm_budget: {BUDGET_S}\n"
        )
        with (
            coda_service(home, config=config, port=port) as service,
            ManagedProcess(prom_argv, tmp / "prometheus.log") as prometheus,
        ):
            prom = PrometheusAPI(f"http://127.0.0.1:{prom_port}")
            wait_until(prom.ready, 30, "prometheus ready", prometheus)
            wait_until(
                lambda: prom.query(f'coda_stage_stalls_total{{job="{SCRAPE_JOB}"}}'),
                30,
                "a scrape",
                prometheus,
            )
            stall, running, alert, oldest, total, turn = asyncio.run(
                _stalled_turn(service.base, model, prom, [prometheus])
            )
            yield Stalled(stall, running, alert, oldest, total, turn, home)


def test_stage_stalled_is_sent_while_the_turn_is_stuck(stalled: Stalled) -> None:
    assert stalled.running_when_stalled
    stall = stalled.stall
    assert (stall["stage"], stall["session_id"]) == ("llm", "stuck")
    assert stall["budget_ms"] == BUDGET_S * 1000
    assert stall["idle_ms"] >= BUDGET_S * 1000
    assert stall["conversation_id"] == stalled.turn["conversation_id"]


def test_the_alert_fires_and_the_metrics_move_while_it_is_stuck(stalled: Stalled) -> None:
    (alert,) = stalled.alert
    assert alert["labels"]["stage"] == "llm" and alert["labels"]["severity"] == "warning"
    assert stalled.stalls_total >= 1
    assert stalled.oldest_s >= BUDGET_S  # the stuck llm stage (or its turn's tts) is old


def test_the_finished_turn_remembers_the_stall(stalled: Stalled) -> None:
    assert stalled.turn["response"] == "The lighthouse stands. It shines."

    def written() -> list[dict[str, Any]]:  # logs are written off the turn's path
        logs = [read_log(p) for p in (stalled.home / "pipeline_logs").glob("*.json")]
        return [g for g in logs if g["conversation_id"] == stalled.turn["conversation_id"]]

    (log,) = wait_until(written, 10, "the turn's conversation log")
    assert log["end_reason"] == "completed"
    assert [s["stage"] for s in log["stalls"]] == ["llm"]
    llm = next(s for s in log["stages"] if s["stage_name"] == "llm")
    assert llm["metadata"]["stalls"] == 1
    path = next(
        p
        for p in (stalled.home / "pipeline_logs").glob("*.json")
        if stalled.turn["conversation_id"] in p.name
    )
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("coda-otel")), "trace", "show", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (llm_line,) = [line for line in shown.splitlines() if line.strip().startswith("llm ")]
    assert llm_line.endswith("STALLED"), shown
