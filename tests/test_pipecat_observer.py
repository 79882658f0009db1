"""coda-otel's Pipecat observer on real Pipecat pipelines (PipelineWorker + WorkerRunner).

Spans go to an in-memory exporter; the turns to a recording listener; metrics to a
CodaMetrics registry. Real Coda Lite services (pocketsphinx, the echo model, espeak-ng) for a
spoken turn; scripted processors for what real services do not do on demand (hold an answer
to stall or interrupt it, fail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import IN_CI, require_tool

if not IN_CI:
    pytest.importorskip(
        "pipecat", reason="pipecat-ai is not installed (pip install 'coda-lite[pipecat]')"
    )

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pipecat.frames.frames import InterruptionFrame, UserStartedSpeakingFrame
from pipecat.pipeline.pipeline import Pipeline

from coda_otel.events import StallEvent
from coda_otel.integrations.pipecat import CodaObserver, PipecatDebugControl
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline import ConversationPipelineDebugger, PipelineMetrics
from coda_otel.testing import RecordingListener, eventually
from tests.pipecat_harness import ScriptedLLM, ScriptedTTS, running, typed


class Recorder(RecordingListener):
    def __init__(self) -> None:
        super().__init__()
        self.stalls: list[StallEvent] = []

    def on_stage_stalled(self, event: StallEvent) -> None:
        self.stalls.append(event)


class Rig:
    """A debugger exporting to memory, its metrics, a recorder and the observer."""

    def __init__(self, tmp_path: Any, stall_budgets: dict[str, float] | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.metrics = CodaMetrics(process_collector=False)
        self.events = Recorder()
        self.debugger = ConversationPipelineDebugger(
            output_dir=tmp_path,
            tracer_provider=provider,
            listeners=[PipelineMetrics(self.metrics), self.events],
            stall_budgets=stall_budgets,
        )
        self.observer = CodaObserver(self.debugger, metrics=self.metrics, session_id="s1")

    def spans(self, trace_id: str | None) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if format(s.context.trace_id, "032x") == trace_id
        ]

    def value(self, name: str, **labels: str) -> float:
        found = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


@pytest.fixture
def rig(tmp_path: Any) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.debugger.close()


def children(spans: list[ReadableSpan]) -> tuple[ReadableSpan, dict[str, ReadableSpan]]:
    root = next(s for s in spans if s.name == "conversation")
    kids = {s.name: s for s in spans if s.parent is not None}
    assert all(s.parent.span_id == root.context.span_id for s in kids.values())  # type: ignore[union-attr]
    return root, kids


@pytest.mark.slow
async def test_a_spoken_turn_is_one_trace_with_stt_llm_tts_and_a_breakdown_that_adds_up(
    rig: Rig,
) -> None:
    require_tool("espeak-ng")
    from coda_lite.config import LlmConfig, SttConfig, TtsConfig
    from coda_lite.llm.echo import EchoLLM
    from coda_lite.speech.stt import PocketSphinxSTT
    from coda_lite.speech.tts import EspeakTTS
    from examples.pipecat_services import (
        CodaLiteLLMService,
        CodaLiteSTTService,
        CodaLiteTTSService,
        user_speech,
    )

    tts = EspeakTTS(TtsConfig())
    wav = await tts.synthesize("What is the weather like today?")
    pipeline = Pipeline(
        [
            CodaLiteSTTService(PocketSphinxSTT(SttConfig())),
            CodaLiteLLMService(EchoLLM(LlmConfig(backend="echo"))),
            CodaLiteTTSService(tts),
        ]
    )
    async with running(pipeline, rig.observer) as worker:
        await worker.queue_frames(user_speech(wav))
        await eventually(lambda: rig.events.conversations, 60, what="the turn to end")
    turn = rig.events.conversations[0]
    assert turn.status == "ok" and turn.end_reason == "completed"
    assert [s.stage for s in turn.stages] == ["stt", "llm", "tts"]
    root, kids = children(rig.spans(turn.trace_id))
    assert set(kids) == {"stt", "llm", "tts"}
    llm = kids["llm"].attributes or {}
    assert llm["gen_ai.request.model"] == "echo"
    assert llm["gen_ai.usage.output_tokens"] > 0 and llm["gen_ai.usage.input_tokens"] > 0
    assert llm["gen_ai.response.time_to_first_chunk"] >= 0
    latency = turn.latency
    assert latency is not None
    parts = latency["breakdown_us"]
    assert set(parts) == {"recognition", "handoffs", "llm_first_sentence", "tts_first_sentence"}
    assert latency["voice_to_voice_us"] == sum(parts.values()) > 0
    assert parts["recognition"] > 0  # pocketsphinx ran after the user stopped speaking
    assert latency["time_to_first_audio_us"] >= latency["time_to_first_token_us"] >= 0
    attrs = root.attributes or {}
    assert attrs["coda.latency.voice_to_voice"] == latency["voice_to_voice_us"] / 1e6
    # the stt span starts when the user starts speaking and ends before the model is asked
    assert kids["stt"].end_time <= kids["llm"].start_time <= kids["tts"].start_time  # type: ignore[operator]
    assert rig.value("coda_voice_to_voice_latency_seconds_count") == 1
    assert rig.value("coda_llm_tokens_total", type="output") == llm["gen_ai.usage.output_tokens"]
    assert rig.value("coda_service_ttfb_seconds_count", stage="tts") >= 1
    assert rig.value("coda_service_processing_seconds_count", stage="stt") == 1
    assert rig.value("coda_tts_characters_total") > 0


async def test_typed_turns_are_numbered_and_each_gets_its_own_trace(rig: Rig) -> None:
    pipeline = Pipeline([ScriptedLLM(["Hello", " there."]), ScriptedTTS()])
    async with running(pipeline, rig.observer) as worker:
        for n in (1, 2):
            await worker.queue_frame(typed(f"turn {n}"))
            await eventually(lambda n=n: len(rig.events.conversations) == n, 10)
    first, second = rig.events.conversations
    assert (first.turn, second.turn) == (1, 2) and first.trace_id != second.trace_id
    assert first.session_id == second.session_id == "s1"
    for turn in (first, second):
        assert turn.status == "ok"
        _, kids = children(rig.spans(turn.trace_id))
        assert set(kids) == {"stt", "llm", "tts"}
        assert turn.latency is not None
        assert turn.latency["voice_to_voice_us"] == sum(turn.latency["breakdown_us"].values())
        assert turn.latency["breakdown_us"]["recognition"] == 0  # typed: nothing to recognize


@pytest.mark.parametrize(("barge_in", "source"), [(True, "new_turn"), (False, "command")])
async def test_an_interruption_mid_answer_ends_the_turn_interrupted(
    rig: Rig, barge_in: bool, source: str
) -> None:
    hold = asyncio.Event()
    llm = ScriptedLLM(["First sentence.", " Never said."], hold=hold, hold_after=1)
    tts = ScriptedTTS()
    async with running(Pipeline([llm, tts]), rig.observer) as worker:
        await worker.queue_frame(typed("tell me everything"))
        await asyncio.wait_for(tts.spoke.wait(), 10)  # the first sentence; the model is held
        if barge_in:  # as Pipecat's user aggregator does when the user speaks over the bot
            await worker.queue_frames([UserStartedSpeakingFrame(), InterruptionFrame()])
        else:  # the console's Interrupt button
            answering = await eventually(lambda: rig.observer.answering, 10)
            control = PipecatDebugControl(rig.debugger, worker, observer=rig.observer)
            sent = await control.interrupt("s1")
            assert sent["interrupted"] and sent["conversation_id"] == answering
        await eventually(lambda: rig.events.conversations, 10, what="the interrupted turn")
        hold.set()
    turn = rig.events.conversations[0]
    assert turn.status == "cancelled" and turn.end_reason == "interrupted"
    assert turn.interruption is not None
    assert turn.interruption["interrupted_by"] == source
    assert turn.interruption["spoken_chars"] == len("First sentence.")
    assert turn.interruption["generated_chars"] == len("First sentence.")
    root, kids = children(rig.spans(turn.trace_id))
    assert (root.attributes or {})["coda.turn.end_reason"] == "interrupted"
    assert (kids["llm"].attributes or {})["coda.stage.status"] == "cancelled"
    assert (kids["tts"].attributes or {})["coda.stage.status"] == "cancelled"
    assert root.status.status_code != StatusCode.ERROR  # an interruption is not a failure
    assert rig.value("coda_turns_interrupted_total", source=source) == 1


async def test_a_stalled_processor_is_reported_while_it_stalls(tmp_path: Any) -> None:
    rig = Rig(tmp_path, stall_budgets={"llm": 0.2})
    hold = asyncio.Event()
    try:
        llm = ScriptedLLM(["Late", " answer."], hold=hold, hold_after=0)
        async with running(Pipeline([llm, ScriptedTTS()]), rig.observer) as worker:
            await worker.queue_frame(typed("are you there?"))
            await eventually(lambda: rig.events.stalls, 10, what="the llm stall")
            assert not rig.events.conversations  # reported while the stage still runs
            hold.set()
            await eventually(lambda: rig.events.conversations, 10)
    finally:
        rig.debugger.close()
    stall = rig.events.stalls[0]
    assert stall.stage == "llm" and stall.budget_s == 0.2 and stall.idle_s >= 0.2
    turn = rig.events.conversations[0]
    assert turn.status == "ok" and [s.stage for s in turn.stalls] == ["llm"]
    _, kids = children(rig.spans(turn.trace_id))
    assert "stage.stalled" in [e.name for e in kids["llm"].events]
    assert rig.value("coda_stage_stalls_total", stage="llm") == 1


async def test_an_error_frame_fails_the_stage_that_pushed_it(rig: Rig) -> None:
    llm = ScriptedLLM(["never"], fail=ConnectionError("model server gone"))
    async with running(Pipeline([llm, ScriptedTTS()]), rig.observer) as worker:
        await worker.queue_frame(typed("hello?"))
        await eventually(lambda: rig.events.conversations, 10, what="the failed turn")
    turn = rig.events.conversations[0]
    assert turn.status == "error" and turn.end_reason == "error"
    llm_event = next(s for s in turn.stages if s.stage == "llm")
    assert llm_event.status == "error" and llm_event.error_type == "ConnectionError"
    root, kids = children(rig.spans(turn.trace_id))
    assert kids["llm"].status.status_code == StatusCode.ERROR
    assert root.status.status_code == StatusCode.ERROR
    assert "tts" not in kids  # nothing was spoken
    errors = rig.value(
        "coda_pipeline_stage_errors_total", stage="llm", error_type="ConnectionError"
    )
    assert errors == 1


async def test_the_observer_never_breaks_the_pipeline(rig: Rig) -> None:
    class Broken:
        def conversation(self, **_: Any) -> Any:
            raise RuntimeError("debugger down")

    failures: list[BaseException] = []
    observer = CodaObserver(Broken(), on_error=failures.append)
    async with running(
        Pipeline([ScriptedLLM(["Hi."]), ScriptedTTS()]), observer, rig.observer
    ) as w:
        await w.queue_frame(typed("hello"))
        await eventually(lambda: rig.events.conversations, 10)
    assert rig.events.conversations[0].status == "ok"  # the pipeline answered regardless
    assert failures and observer.failures == len(failures)


async def test_a_cancelled_pipeline_cancels_the_open_turn(tmp_path: Any) -> None:
    rig = Rig(tmp_path, stall_budgets={"llm": 0.1})
    try:
        llm = ScriptedLLM(["never"], hold=asyncio.Event(), hold_after=0)
        async with running(Pipeline([llm, ScriptedTTS()]), rig.observer) as worker:
            await worker.queue_frame(typed("hello?"))
            await eventually(lambda: rig.events.stalls, 10, what="the llm stage to be open")
            await worker.cancel()
            await eventually(lambda: rig.events.conversations, 10, what="the cancelled turn")
    finally:
        rig.debugger.close()
    turn = rig.events.conversations[0]
    assert turn.status == "cancelled" and turn.end_reason == "cancelled"
    _, kids = children(rig.spans(turn.trace_id))
    assert (kids["llm"].attributes or {})["coda.stage.status"] == "cancelled"
