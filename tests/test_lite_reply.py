"""The reply: sentences cut from a stream, spoken while the model writes; the turn's clock.

Real parts: the echo model and espeak-ng. A slow model is the echo model with a pause between
pieces (an LLM protocol implementation, not a stub of the code under test).
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from coda_lite.config import TtsConfig
from coda_lite.llm import EchoLLM, LLMResult
from coda_lite.pipeline.conversation import ConversationManager, StageError
from coda_lite.pipeline.latency import PARTS, TurnClock, measure
from coda_lite.speech.sentences import SentenceSplitter
from coda_lite.speech.tts import EspeakTTS
from tests.support import require_tool


@pytest.mark.parametrize(
    ("pieces", "sentences", "rest"),
    [
        (["Paris is the capital", ". It is big"], ["Paris is the capital."], "It is big"),
        (["It costs 3.5 euros. ", "Cheap!"], ["It costs 3.5 euros."], "Cheap!"),
        (["Yes!", " Really? ", "Sure."], ["Yes!", "Really?"], "Sure."),
        (["1. Tea and milk. 2. Coffee"], ["1. Tea and milk."], "2. Coffee"),  # "1." not alone
        (['He said "hi." ', "Then left"], ['He said "hi."'], "Then left"),
        (["Line one\n", "line two"], ["Line one"], "line two"),
    ],
)
def test_sentences_are_cut_as_soon_as_they_are_complete(
    pieces: list[str], sentences: list[str], rest: str
) -> None:
    splitter = SentenceSplitter()
    got = [s for piece in pieces for s in splitter.feed(piece)]
    assert got == sentences
    assert splitter.flush() == rest


@pytest.mark.parametrize(
    ("pieces", "spoken", "rest"),
    [
        # the first piece ends at a clause once it holds 4 words; the rest by sentences
        (["To make tea, boil", " some water, then pour", " it. Then, wait. Drink"],
         ["To make tea, boil some water,", "then pour it.", "Then, wait."], "Drink"),
        (["Hi, Ada. You live in Rome, ", "I think. "],
         ["Hi, Ada.", "You live in Rome, I think."], None),
        (["The sky is blue - because", " of light"], ["The sky is blue -"], "because of light"),
        (["Yes; that is right: it is"], ["Yes; that is right:"], "it is"),
        (["One, two, three"], [], "One, two, three"),  # no clause break after 4 words yet
    ],
)  # fmt: skip
def test_the_first_piece_may_be_a_phrase_so_the_voice_starts_sooner(
    pieces: list[str], spoken: list[str], rest: str | None
) -> None:
    splitter = SentenceSplitter(first_phrase_words=4)
    got = [s for piece in pieces for s in splitter.feed(piece)]
    assert got == spoken
    assert splitter.flush() == rest
    with pytest.raises(ValueError, match="first_phrase_words"):
        SentenceSplitter(first_phrase_words=-1)


async def test_speech_starts_after_the_first_phrase_when_asked() -> None:
    """With first_phrase_words, the synthesizer hears a phrase before the first sentence
    is complete; without, the first thing spoken is a whole sentence."""
    require_tool("espeak-ng")

    class Memory(NoMemory):
        async def get_context(self, query: str, *, owner: str) -> list[dict[str, Any]]:
            return [{"content": "I live in Lisbon, near the river, in an old house by the sea."}]

    firsts = {}
    for words in (0, 4):
        tts = Timeline(EspeakTTS(TtsConfig()))
        manager = ConversationManager(
            None,
            Memory(),
            SlowEcho(0.02),
            tts,
            first_phrase_words=words,  # type: ignore[arg-type]
        )
        result = await manager.process_user_input("Where do I live?")
        firsts[words] = tts.spoken[0][1]
        assert " ".join(text for _, text in tts.spoken) == result.response  # nothing lost
    assert firsts[0].endswith(".") and not firsts[4].endswith(".")
    assert firsts[0].startswith(firsts[4]) and len(firsts[4].split()) >= 4


def test_the_breakdown_telescopes_to_the_total() -> None:
    clock = TurnClock()
    for mark in ("stt_start", "stt_end", "retrieval_start", "retrieval_end", "llm_start",
                 "first_token", "first_sentence", "tts_start", "first_audio"):  # fmt: skip
        clock.mark(mark)
    latency = measure(clock, output_tokens=1, streamed=True)
    assert latency is not None and set(latency.breakdown_us) == set(PARTS)
    assert sum(latency.breakdown_us.values()) == latency.voice_to_voice_us
    assert latency.output_tokens_per_second is None  # one token: no decoding rate
    del clock.marks["first_audio"]
    assert measure(clock, output_tokens=1, streamed=True) is None  # nothing was spoken


class SlowEcho(EchoLLM):
    """The echo model, writing one word every ``pause`` seconds."""

    def __init__(self, pause: float) -> None:
        super().__init__()
        self.pause = pause
        self.last_word_at = 0.0  # loop time when the last word was written

    async def stream(
        self, query: str, context: Sequence[Mapping[str, Any]]
    ) -> AsyncIterator[str | LLMResult]:
        async for item in super().stream(query, context):
            if isinstance(item, str):
                await asyncio.sleep(self.pause)
                self.last_word_at = asyncio.get_running_loop().time()
            yield item


class NoMemory:
    async def get_context(self, query: str, *, owner: str) -> list[dict[str, Any]]:
        return [{"content": "I live in Lisbon. I like tea. My name is Ada."}]

    async def add_interaction(self, user: str, assistant: str, *, owner: str) -> list[Any]:
        return []


class Timeline:
    """A TTS that records when each sentence was synthesized (wraps the real espeak-ng)."""

    def __init__(self, tts: EspeakTTS) -> None:
        self.tts = tts
        self.spoken: list[tuple[float, str]] = []

    async def synthesize(self, text: str) -> bytes:
        self.spoken.append((asyncio.get_running_loop().time(), text))
        return await self.tts.synthesize(text)


@pytest.mark.parametrize("streaming", [True, False])
async def test_speech_starts_at_the_first_sentence_only_when_streaming(streaming: bool) -> None:
    require_tool("espeak-ng")
    tts = Timeline(EspeakTTS(TtsConfig()))
    llm = SlowEcho(0.05)
    manager = ConversationManager(None, NoMemory(), llm, tts, streaming=streaming)  # type: ignore[arg-type]
    result = await manager.process_user_input("Tell me what I said.")
    assert result.latency is not None and result.latency.streamed is streaming
    assert sum(result.latency.breakdown_us.values()) == result.latency.voice_to_voice_us
    with wave.open(io.BytesIO(result.audio)) as w:
        assert w.getnframes() > 0  # one WAV, all sentences
    first_at = tts.spoken[0][0]
    if streaming:
        assert len(tts.spoken) >= 2  # "Noted: ..." then "I also remember ..."
        assert first_at < llm.last_word_at - 0.2  # speaking while the model still writes
    else:
        assert first_at >= llm.last_word_at  # not a word spoken before the answer was whole
        assert [text for _, text in tts.spoken] == [result.response]
        gap = (
            result.latency.breakdown_us["llm_first_sentence"]
            - result.latency.time_to_first_token_us
        )
        assert 0 <= gap < 5_000  # the whole answer came at once: first token = first sentence


async def test_a_failing_model_stops_the_speech_and_the_next_turn_works() -> None:
    require_tool("espeak-ng")

    class Breaks(SlowEcho):
        broken = True

        async def stream(
            self, query: str, context: Sequence[Mapping[str, Any]]
        ) -> AsyncIterator[str | LLMResult]:
            async for item in super().stream(query, context):
                if self.broken and isinstance(item, str) and "remember" in item:
                    raise RuntimeError("the model crashed mid-answer")
                yield item

    llm = Breaks(0.01)
    manager = ConversationManager(None, NoMemory(), llm, EspeakTTS(TtsConfig()))  # type: ignore[arg-type]
    with pytest.raises(StageError, match="llm stage failed: RuntimeError: the model crashed"):
        await manager.process_user_input("Tell me what I said.")
    llm.broken = False
    ok = await manager.process_user_input("Tell me what I said.")
    assert ok.latency is not None and ok.audio
