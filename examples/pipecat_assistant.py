"""Coda Lite's assistant as a Pipecat pipeline, observed by coda-otel (entirely offline).

    CODA_HOME=/tmp/coda python examples/pipecat_assistant.py --turns 3          # spoken turns
    python examples/pipecat_assistant.py --text "What time is it?" --llm echo   # typed turn

Each scripted question is spoken by espeak-ng into a WAV, streamed into the pipeline as 20 ms
input audio frames between ``UserStartedSpeakingFrame`` and ``UserStoppedSpeakingFrame`` (what
a transport with VAD pushes), recognized by pocketsphinx, answered by the local model
(``--llm echo``: the echo model) and spoken by espeak-ng: ``Pipeline([stt, llm, tts])`` run by
``PipelineWorker`` + ``WorkerRunner``, with coda-otel's :class:`CodaObserver` attached.

Traces go where coda-otel sends them (``OTEL_EXPORTER_OTLP_ENDPOINT``, else
``$CODA_HOME/traces/traces.jsonl``); after each turn its waterfall is printed, with the
voice-to-voice latency and its breakdown. ``--serve PORT`` keeps the pipeline running after
the scripted turns with the debug console on ``http://127.0.0.1:PORT/debug/``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pipecat.frames.frames import EndFrame, Frame, TranscriptionFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.workers.runner import WorkerRunner

from coda_lite.config import LlmConfig, SttConfig, TtsConfig
from coda_lite.llm.factory import make_llm
from coda_lite.speech.stt import PocketSphinxSTT
from coda_lite.speech.tts import EspeakTTS
from coda_otel import env
from coda_otel.events import ConversationEvent, ListenerBase
from coda_otel.integrations.pipecat import CodaObserver
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline import ConversationPipelineDebugger, PipelineMetrics, read_log
from coda_otel.tracing.setup import configure
from coda_otel.tracing.waterfall import from_log, render

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipecat_services import (  # the example's sibling module
    CodaLiteLLMService,
    CodaLiteSTTService,
    CodaLiteTTSService,
    user_speech,
)

QUESTIONS = (
    "What is the weather like today?",
    "Tell me a short story.",
    "How far away is the moon?",
    "What should I cook for dinner?",
)


class TurnEnded(ListenerBase):
    """Hands each finished turn to the script (the debugger calls it on the observer's task)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[ConversationEvent] = asyncio.Queue()

    def on_conversation_end(self, event: ConversationEvent) -> None:
        self.queue.put_nowait(event)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--turns", type=int, default=3, help="scripted spoken turns (default 3)")
    p.add_argument("--text", action="append", help="a typed turn instead (repeatable)")
    p.add_argument("--llm", choices=("auto", "echo", "local"), default="auto")
    p.add_argument("--serve", type=int, metavar="PORT", help="then serve the debug console")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one turn may take")
    return p.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    home = env.coda_home()
    metrics = CodaMetrics()
    telemetry = configure(service_name="coda-pipecat", metrics=metrics)
    ended = TurnEnded()
    debugger = ConversationPipelineDebugger(
        output_dir=home / env.PIPELINE_LOGS_DIR,
        listeners=[PipelineMetrics(metrics), ended],
        stall_budgets={"llm": 30.0, "tts": 10.0},
    )
    llm = make_llm(LlmConfig(backend=args.llm), models_dir=home / "models")
    tts = EspeakTTS(TtsConfig())
    pipeline = Pipeline(
        [
            CodaLiteSTTService(PocketSphinxSTT(SttConfig())),
            CodaLiteLLMService(llm),
            CodaLiteTTSService(tts),
        ]
    )
    observer = CodaObserver(debugger, metrics=metrics, session_id="pipecat-example")
    worker = PipelineWorker(
        pipeline,
        observers=[observer],
        params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
        enable_rtvi=False,
        idle_timeout_secs=None,
    )
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")  # type: ignore[misc]
    async def _started(_worker: PipelineWorker, _frame: Frame) -> None:
        started.set()

    turns: list[list[Frame]] = []
    if args.text:
        stamp = "typed"
        turns = [[TranscriptionFrame(text, "user", stamp, finalized=True)] for text in args.text]
    else:
        for i in range(args.turns):
            wav = await tts.synthesize(QUESTIONS[i % len(QUESTIONS)])
            turns.append(user_speech(wav))
    print(f"coda-otel: traces to {telemetry.exporter_description}")
    failures = 0

    async def drive() -> None:
        nonlocal failures
        await asyncio.wait_for(started.wait(), 60)
        for frames in turns:
            await worker.queue_frames(frames)
            event = await asyncio.wait_for(ended.queue.get(), args.timeout)
            debugger.flush()
            logs = sorted((home / env.PIPELINE_LOGS_DIR).glob(f"*{event.conversation_id}*"))
            if logs:
                print(render(from_log(read_log(logs[-1]))))
            failures += event.status != "ok"
        if args.serve:
            await serve(args.serve, debugger, metrics, worker, observer)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    try:
        await asyncio.gather(runner.run(), drive())
    finally:
        debugger.close()
        telemetry.shutdown()
    return 1 if failures else 0


async def serve(
    port: int,
    debugger: ConversationPipelineDebugger,
    metrics: CodaMetrics,
    worker: PipelineWorker,
    observer: CodaObserver,
) -> None:
    """The debug console and /metrics for this pipeline until interrupted (Ctrl-C)."""
    from aiohttp import web

    from coda_otel.integrations.pipecat import PipecatDebugControl, debug_app

    control = PipecatDebugControl(debugger, worker, observer=observer)
    app = debug_app(debugger, metrics, control)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"debug console: http://127.0.0.1:{port}/debug/  (Ctrl-C stops)")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    from loguru import logger as pipecat_log  # Pipecat logs every frame hop at DEBUG

    pipecat_log.remove()
    pipecat_log.add(sys.stderr, level="WARNING")
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
