"""A Pipecat app's debug routes: a real scrape of /metrics and the console in real Chromium.

The app runs on its own thread and event loop, as a server would: a Pipecat pipeline of
Coda Lite's echo model and espeak-ng (``PipelineWorker`` + ``WorkerRunner``), coda-otel's
observer, and ``debug_app`` (``/ws``, ``/debug/``, ``/metrics``) on a free loopback port.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import IN_CI, free_port, require_tool

if not IN_CI:
    pytest.importorskip(
        "pipecat", reason="pipecat-ai is not installed (pip install 'coda-lite[pipecat]')"
    )

from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from pipecat.pipeline.pipeline import Pipeline

from coda_lite.config import LlmConfig, TtsConfig
from coda_lite.llm.echo import EchoLLM
from coda_lite.speech.tts import EspeakTTS
from coda_otel.integrations.pipecat import CodaObserver, PipecatDebugControl, debug_app
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline import ConversationPipelineDebugger, PipelineMetrics
from examples.pipecat_services import CodaLiteLLMService, CodaLiteTTSService
from tests.pipecat_harness import running

pytestmark = [pytest.mark.slow, pytest.mark.browser]


class PipecatApp:
    """The app on a thread of its own; ``call`` runs a coroutine on its loop."""

    def __init__(self, tmp_path: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self._ready: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._tmp = tmp_path
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.metrics = CodaMetrics(process_collector=False)
            self.debugger = ConversationPipelineDebugger(
                output_dir=self._tmp,
                listeners=[PipelineMetrics(self.metrics)],
                tracer_provider=TracerProvider(),  # sampled: turns carry their trace ids
            )
            observer = CodaObserver(self.debugger, metrics=self.metrics, session_id="web")
            pipeline = Pipeline(
                [CodaLiteLLMService(EchoLLM(LlmConfig(backend="echo"))),
                 CodaLiteTTSService(EspeakTTS(TtsConfig()))]
            )  # fmt: skip
            async with running(pipeline, observer) as worker:
                self.control = PipecatDebugControl(self.debugger, worker, observer=observer)
                runner = web.AppRunner(debug_app(self.debugger, self.metrics, self.control))
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", self.port).start()
                self._ready.set_result(None)
                try:
                    await self._stop.wait()
                finally:
                    await runner.cleanup()
            self.debugger.close()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def __enter__(self) -> PipecatApp:
        self.thread.start()
        self._ready.result(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(60)

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipecatApp]:
    require_tool("espeak-ng")
    with PipecatApp(tmp_path_factory.mktemp("pipecat-web")) as a:
        yield a


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = requests.get(f"{base}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


def test_a_scrape_of_metrics_shows_the_pipecat_turn(app: PipecatApp) -> None:
    before = samples(app.base)
    result = app.call(app.control.run_text_turn("What is the time?", None))
    assert result["status"] == "ok" and result["trace_id"]
    after = samples(app.base)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    for stage in ("stt", "llm", "tts"):
        assert moved("coda_pipeline_stage_duration_seconds_count", stage=stage) == 1
    assert moved("coda_conversations_total", status="ok") == 1
    assert moved("coda_voice_to_voice_latency_seconds_count") == 1
    assert moved("coda_llm_time_to_first_token_seconds_count") == 1
    assert moved("coda_llm_tokens_total", type="output") > 0
    assert moved("coda_llm_tokens_total", type="input") > 0
    assert moved("coda_service_ttfb_seconds_count", stage="tts") >= 1
    assert moved("coda_service_processing_seconds_count", stage="llm") == 1
    assert moved("coda_tts_characters_total") > 0


def test_the_console_interrupt_command_says_when_nothing_was_answering(app: PipecatApp) -> None:
    result = app.call(app.control.interrupt("web"))
    assert result == {"session_id": "web", "interrupted": False, "conversation_id": None}


@pytest.mark.browser
def test_the_console_shows_a_pipecat_turn_with_its_three_stages(app: PipecatApp) -> None:
    from tests.browser_harness import ConsolePage, chromium

    with chromium() as browser:
        cp = ConsolePage.open(browser, f"{app.base}/debug/")
        try:
            cp.wait_live()
            cp.view("pipeline")
            cp.page.fill("#turn-text", "Tell me about Pipecat.")
            cp.page.click("#turn-form button[type=submit]")
            turn = cp.page.locator("article.turn[data-status=ok]").first
            turn.wait_for(timeout=30000)
            stages = turn.locator(".stage")
            stages.nth(2).wait_for(timeout=10000)
            assert {s.get_attribute("data-stage") for s in stages.all()} == {"stt", "llm", "tts"}
            assert all(s.get_attribute("data-status") == "ok" for s in stages.all())
            cp.page.wait_for_selector("#turn-result[data-state=ok]")
            cp.screenshot("pipecat")
            assert cp.errors == []
        finally:
            cp.close()
