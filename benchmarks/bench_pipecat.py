"""What observing a Pipecat pipeline costs: the same pipeline bare, with Pipecat's own
tracing, and with coda-otel's observer.

    python -m benchmarks.run --only pipecat           # the local model (SmolLM2, greedy)
    python -m benchmarks.run --only pipecat --quick   # the echo model

Three ``PipelineWorker``s run side by side on one loop, each ``Pipeline([llm, tts, sink])`` with
Coda Lite's model and espeak-ng as Pipecat processors (examples/pipecat_services.py); typed
turns (a ``TranscriptionFrame``) go to each in turn, alternating, and a turn is timed until
its ``LLMFullResponseEndFrame`` leaves the synthesizer (everything spoken). Variants:

* bare: no observer, Pipecat's tracing off (the baseline);
* Pipecat tracing: ``enable_tracing=True`` (Pipecat's ``TurnTraceObserver`` and service
  decorators) on an SDK tracer provider without exporters;
* coda-otel: :class:`~coda_otel.integrations.pipecat.CodaObserver` on a debugger with the
  metrics listener and conversation logs, on the same provider.

Budget: coda-otel at most 1.02x bare on real-model turns (the echo model's turns take a few
milliseconds, so ``--quick`` shows the fixed cost; no budget there). Skipped, with a note,
without pipecat-ai or espeak-ng.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, run_async

QUICK_ROUNDS, FULL_ROUNDS = 30, 5
QUESTIONS = ("Tell me a fact about the sea.", "What is a good name for a cat?")


async def _measure(quick: bool) -> list[Result]:
    from loguru import logger
    from opentelemetry.sdk.trace import TracerProvider
    from pipecat.frames.frames import Frame, LLMFullResponseEndFrame, TranscriptionFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from coda_lite.config import LlmConfig, TtsConfig
    from coda_lite.llm.factory import make_llm
    from coda_lite.speech.tts import EspeakTTS
    from coda_otel.integrations.pipecat import CodaObserver
    from coda_otel.metrics import CodaMetrics
    from coda_otel.pipeline import ConversationPipelineDebugger, PipelineMetrics
    from examples.pipecat_services import CodaLiteLLMService, CodaLiteTTSService

    logger.remove()  # Pipecat logs every frame hop at DEBUG: that would be measured too
    config = LlmConfig(backend="echo" if quick else "local", temperature=0.0, max_tokens=48)
    llm = make_llm(config, models_dir=Path("~/.coda/models").expanduser())
    tts = EspeakTTS(TtsConfig())
    provider = TracerProvider()  # spans made and ended, exported nowhere: the same for both
    from opentelemetry import trace

    trace.set_tracer_provider(provider)  # Pipecat's tracing uses the global provider

    class Done(FrameProcessor):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.ended = asyncio.Event()

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            await self.push_frame(frame, direction)
            if isinstance(frame, LLMFullResponseEndFrame):
                self.ended.set()

    home = Path(tempfile.mkdtemp(prefix="bench-pipecat-"))
    metrics = CodaMetrics(process_collector=False)
    debugger = ConversationPipelineDebugger(
        output_dir=home, tracer_provider=provider, listeners=[PipelineMetrics(metrics)]
    )
    variants: dict[str, tuple[PipelineWorker, Done]] = {}
    started: list[asyncio.Event] = []
    for name, tracing, observers in (
        ("bare", False, []),
        ("pipecat", True, []),
        ("coda", False, [CodaObserver(debugger, metrics=metrics)]),
    ):
        done = Done()
        worker = PipelineWorker(
            Pipeline([CodaLiteLLMService(llm), CodaLiteTTSService(tts), done]),
            observers=observers,
            params=PipelineParams(enable_metrics=True, enable_usage_metrics=True),
            enable_rtvi=False,
            enable_tracing=tracing,
            idle_timeout_secs=None,
        )
        variants[name] = (worker, done)
        started.append(asyncio.Event())
        worker.add_event_handler("on_pipeline_started", _setter(started[-1]))
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(*(w for w, _ in variants.values()))
    running = asyncio.create_task(runner.run())
    times: dict[str, list[float]] = {name: [] for name in variants}

    async def turn(name: str, text: str) -> float:
        worker, done = variants[name]
        done.ended.clear()
        t0 = time.perf_counter()
        await worker.queue_frame(TranscriptionFrame(text, "user", "bench", finalized=True))
        await asyncio.wait_for(done.ended.wait(), 600)
        return time.perf_counter() - t0

    try:
        for event in started:  # each StartFrame went through its pipeline
            await asyncio.wait_for(event.wait(), 60)
        for name in variants:  # warm-up: model loaded, first-turn costs paid
            await turn(name, QUESTIONS[0])
        rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
        order = list(variants)
        for i in range(rounds):
            text = QUESTIONS[i % len(QUESTIONS)]
            for name in order[i % 3 :] + order[: i % 3]:  # rotate who goes first
                times[name].append(await turn(name, text))
    finally:
        for worker, _ in variants.values():
            await worker.cancel()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        debugger.close()
        shutil.rmtree(home, ignore_errors=True)
    bare, pipecat, coda = (statistics.median(times[n]) for n in ("bare", "pipecat", "coda"))
    model = "echo model" if quick else f"local model ({llm.model}, greedy)"
    note = f"median of {rounds} turns each, {model}, espeak-ng, interleaved"
    return [
        Result("pipecat", "turn, bare pipeline", bare, "s", note=note),
        Result("pipecat", "turn, Pipecat tracing", pipecat, "s", "bare pipeline", bare,
               note="enable_tracing=True, spans not exported"),
        Result("pipecat", "turn, coda-otel observer", coda, "s", "bare pipeline", bare,
               budget_ratio=None if quick else 1.02,
               note="traces (not exported), metrics, conversation logs"),
    ]  # fmt: skip


def _setter(event: asyncio.Event) -> Any:
    async def handler(_worker: Any, _frame: Any) -> None:
        event.set()

    return handler


def _problem(quick: bool) -> str | None:
    try:
        import pipecat  # noqa: F401
    except ImportError:
        return "pipecat-ai is not installed (pip install 'coda-lite[pipecat]')"
    if shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed"
    if not quick:
        from coda_lite.config import LlmConfig
        from coda_lite.llm.local import local_model_problem

        return local_model_problem(LlmConfig(backend="local"))
    return None


def run(quick: bool) -> list[Result]:
    problem = _problem(quick)
    if problem is not None:
        return [Result("pipecat", f"skipped: {problem}", 0, "s")]
    out: list[Result] = run_async(_measure(quick))
    return out


__all__: list[Any] = ["run"]
