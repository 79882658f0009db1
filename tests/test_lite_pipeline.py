"""The whole pipeline end to end on real backends, observed through the observer protocol."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import wave
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coda_lite.config import Config, load_config
from coda_lite.llm import EchoLLM, LLMResult
from coda_lite.pipeline.build import Pipeline, build_pipeline
from coda_lite.pipeline.conversation import STAGES, ConversationManager, StageError
from coda_lite.speech.audio import wav_bytes
from coda_otel.protocols import Component
from tests.support import free_port, require_module, require_tool


class RecordingObserver:
    """Records conversations and stages exactly as a real observer would see them."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @contextlib.contextmanager
    def conversation(
        self, *, session_id: str | None = None, turn: int = 1, conversation_id: str | None = None
    ) -> Iterator[Any]:
        conv = _Conv(self, conversation_id or f"conv-{len(self.events)}")
        self.events.append(("start", session_id, turn))
        try:
            yield conv
        except BaseException as exc:
            self.events.append(("end", type(exc).__name__))
            raise
        self.events.append(("end", "ok"))


class _Stage:
    def __init__(self) -> None:
        self.output: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.events: list[tuple[str, dict[str, Any], str | None]] = []
        self.progress = 0

    def mark_progress(self) -> None:
        self.progress += 1

    def set_output(self, output: Mapping[str, Any]) -> None:
        self.output = dict(output)

    def set_llm_usage(
        self, *, model: str, input_tokens: int, output_tokens: int, **extra: Any
    ) -> None:
        self.usage = {"model": model, "in": input_tokens, "out": output_tokens, **extra}

    def add_event(
        self, name: str, attributes: Mapping[str, Any], content: str | None = None
    ) -> None:
        self.events.append((name, dict(attributes), content))


class _Conv:
    def __init__(self, obs: RecordingObserver, cid: str) -> None:
        self.obs, self.conversation_id, self.trace_id = obs, cid, "ab" * 16

    def set_latency(self, latency: Mapping[str, Any]) -> None:
        # every turn this module runs: the breakdown adds up to the total, to the microsecond
        assert sum(latency["breakdown_us"].values()) == latency["voice_to_voice_us"]
        assert all(v >= 0 for v in latency["breakdown_us"].values())
        self.obs.events.append(("latency", dict(latency)))

    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        self.obs.events.append(("end_reason", reason, dict(details or {})))

    @contextlib.asynccontextmanager
    async def stage(self, name: str, inputs: Mapping[str, Any]) -> AsyncIterator[_Stage]:
        st = _Stage()
        try:
            yield st
        except BaseException as exc:
            self.obs.events.append(("stage", name, type(exc).__name__, dict(inputs), st))
            raise
        self.obs.events.append(("stage", name, "ok", dict(inputs), st))


def _stages(obs: RecordingObserver) -> list[tuple[Any, ...]]:
    return [e for e in obs.events if e[0] == "stage"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    require_module("sentence_transformers")
    require_module("pocketsphinx")
    require_tool("espeak-ng")
    home = tmp_path_factory.mktemp("coda-home")
    return load_config(env={"CODA_HOME": str(home), "CODA_LLM_BACKEND": "echo"})


@pytest.fixture(scope="module")
def pipeline(config: Config) -> Iterator[Pipeline]:
    p = build_pipeline(config, observer=RecordingObserver())
    yield p
    p.long_term.close()


@pytest.fixture
def observer(pipeline: Pipeline) -> RecordingObserver:
    obs = RecordingObserver()
    pipeline.manager.observer = obs
    return obs


async def test_end_to_end_with_a_memory_dependent_turn(
    pipeline: Pipeline, observer: RecordingObserver
) -> None:
    m = pipeline.manager
    first = await m.process_user_input("My name is Ada and I live in Lisbon.", session_id="e2e")
    assert first.transcript == "My name is Ada and I live in Lisbon."
    assert first.turn == 1 and first.session_id == "e2e" and first.trace_id == "ab" * 16
    assert list(first.timings) == list(STAGES) and all(t >= 0 for t in first.timings.values())
    with wave.open(io.BytesIO(first.audio)) as w:
        assert w.getnframes() > 0

    later = await m.process_user_input("Where do I live?", session_id="e2e")
    assert later.turn == 2
    assert "Lisbon" in later.response
    assert later.memories_used[0]["content"] == "I live in Lisbon."

    stages = _stages(observer)
    # stt, retrieval and llm end in order; memory_update and tts overlap (speech streams)
    for turn in (stages[:5], stages[5:]):
        assert [s[1] for s in turn[:3]] == list(STAGES[:3])
        assert {s[1] for s in turn[3:]} == set(STAGES[3:])
    assert len(stages) == 10 and all(s[2] == "ok" for s in stages)
    stt_stage, _, llm_stage = stages[5], stages[6], stages[7]
    assert stt_stage[4].output == {"transcript": "Where do I live?", "skipped": True}
    assert llm_stage[4].usage["model"] == "echo" and llm_stage[4].usage["in"] > 0
    assert observer.events[0] == ("start", "e2e", 1)
    assert ("start", "e2e", 2) in observer.events


async def test_spoken_turn_goes_through_pocketsphinx(
    pipeline: Pipeline, observer: RecordingObserver, tmp_path: Path
) -> None:
    path = tmp_path / "q.wav"
    path.write_bytes(await pipeline.tts.synthesize("where do i live"))
    result = await pipeline.manager.process_user_input(path, session_id="voice")
    assert "live" in result.transcript
    assert _stages(observer)[0][4].output["skipped"] is False


def _silent_wav() -> bytes:
    return wav_bytes(b"\0\0" * 16000, rate=16000)


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (b"", "empty"),
        (_silent_wav(), "silent"),
        (b"GIF89a not a wav", "not a WAV"),
        (_silent_wav()[:2000], "truncated"),
        (Path("/nonexistent/turn.wav"), "not found"),
        ("   ", "text input is empty"),
    ],
    ids=["empty", "silent", "non-wav", "truncated", "missing-file", "blank-text"],
)
async def test_bad_input_names_what_failed_and_the_next_turn_works(
    pipeline: Pipeline, observer: RecordingObserver, bad: Any, needle: str
) -> None:
    with pytest.raises(StageError, match=needle) as info:
        await pipeline.manager.process_user_input(bad, session_id="bad")
    assert info.value.stage == "stt" and info.value.__cause__ is not None
    assert "stt stage failed" in str(info.value)
    assert _stages(observer)[-1][1:3] == ("stt", type(info.value.__cause__).__name__)
    assert observer.events[-1] == ("end", "StageError")
    ok = await pipeline.manager.process_user_input("Hello again", session_id="bad")
    assert ok.response and ok.turn >= 2


async def test_unreachable_llm_fails_the_llm_stage_then_recovers(config: Config) -> None:
    port = free_port()
    config = copy.deepcopy(config)
    config.llm.backend, config.llm.model = "openai", "tiny"
    config.llm.url = f"http://127.0.0.1:{port}"
    obs = RecordingObserver()
    p = build_pipeline(config, observer=obs)
    try:
        with pytest.raises(StageError, match=rf"127\.0\.0\.1:{port}/v1/chat/completions") as info:
            await p.manager.process_user_input("What is my name?")
        assert info.value.stage == "llm"
        assert [s[1:3] for s in _stages(obs)][-1] == ("llm", "LLMError")

        async def chat(request: web.Request) -> web.Response:
            return web.json_response({"choices": [{"message": {"content": "Back online."}}]})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            result = await p.manager.process_user_input("What is my name?")
        finally:
            await runner.cleanup()
        assert result.response == "Back online." and result.turn == 2
    finally:
        await p.aclose()


async def test_cancellation_propagates_untouched(pipeline: Pipeline) -> None:
    started = asyncio.Event()

    class SlowLLM:
        async def generate(self, query: str, context: Any) -> LLMResult:
            started.set()
            await asyncio.sleep(3600)
            raise AssertionError("not reached")

    obs = RecordingObserver()
    m = ConversationManager(pipeline.stt, pipeline.memory, SlowLLM(), pipeline.tts, obs)
    task = asyncio.create_task(m.process_user_input("hello"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _stages(obs)[-1][1:3] == ("llm", "CancelledError")
    assert obs.events[-1] == ("end", "CancelledError")


async def test_components_are_the_five_health_components(pipeline: Pipeline) -> None:
    names = [c.name for c in pipeline.components]
    assert names == ["stt", "embedder", "memory_store", "llm", "tts"]
    for c in pipeline.components:
        assert isinstance(c, Component)
        beat = await c.get_heartbeat()
        assert beat["healthy"] is True and beat["models_loaded"] is True, c.name
        assert 0.0 <= beat["error_rate"] <= 1.0 and beat["response_time"] >= 0.0
    for c in (pipeline.stt, pipeline.long_term, pipeline.llm, pipeline.tts):
        await c.force_restart()
        assert (await c.get_heartbeat())["healthy"], c.name
    assert (await pipeline.manager.process_user_input("Where do I live?")).response


async def test_wrappers_are_used_and_components_stay_unwrapped(config: Config) -> None:
    wrapped: list[str] = []
    config = copy.deepcopy(config)

    class Wrap:
        def __init__(self, inner: Any) -> None:
            self.inner, self.model_name, self.dim = inner, inner.model_name, inner.dim

        def encode(self, texts: Any) -> Any:
            wrapped.append("embed")
            return self.inner.encode(texts)

    class WrapLLM(EchoLLM):
        async def stream(self, query: str, context: Any) -> AsyncIterator[str | LLMResult]:
            wrapped.append("llm")
            async for item in super().stream(query, context):
                yield item

    config.memory.db_path = config.data_dir / "wrapped.sqlite3"
    p = build_pipeline(config, wrap_embedder=Wrap, wrap_llm=lambda llm: WrapLLM())
    try:
        await p.manager.process_user_input("I love green tea.")
        assert "embed" in wrapped and "llm" in wrapped
        assert isinstance(p.embedder, Wrap) and not isinstance(p.components[1], Wrap)
    finally:
        await p.aclose()


async def test_a_turn_whose_speech_fails_is_not_remembered(pipeline: Pipeline) -> None:
    class BrokenTTS:
        name = "tts"

        async def synthesize(self, text: str) -> bytes:
            raise RuntimeError("the speaker caught fire")

    obs = RecordingObserver()
    m = ConversationManager(pipeline.stt, pipeline.memory, pipeline.llm, BrokenTTS(), obs)
    with pytest.raises(StageError) as failed:
        await m.process_user_input("My favourite colour is teal.", session_id="mute")
    assert failed.value.stage == "tts"
    assert "memory_update" not in [s[1] for s in _stages(obs)]  # never reached
    assert pipeline.long_term.find("My favourite colour is teal.", owner="mute") is None
    spoken = await pipeline.manager.process_user_input(
        "My favourite colour is teal.", session_id="mute"
    )
    assert spoken.response and pipeline.long_term.find("My favourite colour is teal.", owner="mute")
