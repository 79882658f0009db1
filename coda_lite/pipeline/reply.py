"""The assistant's reply: the model's text streams into speech, sentence by sentence.

    reply = Reply(llm, tts, clock, streaming=True)
    speaking = asyncio.create_task(reply.speak(open_tts_stage))   # waits for a sentence
    answer = await run_llm_stage(lambda st: reply.think(st, query, context))
    audio = await speaking               # one WAV: the sentences' audio, concatenated

``think`` reads the model's stream, cuts it into sentences (:mod:`coda_lite.speech.sentences`) and
queues each one as soon as it is complete (the first may be a phrase: ``first_phrase_words``);
``speak`` opens the tts stage when the first sentence arrives and synthesizes them in order,
while the model goes on writing. Each sentence becomes an event on the tts stage (index,
characters, audio bytes, synthesis time; its text only when the observer keeps content).
``streaming=False`` asks the model for the whole answer (``generate``) and speaks it in one
piece. ``progress()`` says how much of the
answer was generated and spoken so far (what an interrupted turn records). Each piece of text
marks the llm stage alive (``mark_progress``), so only a silent model counts as stalled. The
instants that latency is made of (first token, first sentence, first audio) are marked on the
turn's clock.
"""

from __future__ import annotations

import asyncio
import io
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

from coda_lite.llm.types import LLMResult
from coda_lite.pipeline.latency import TurnClock, now_us
from coda_lite.pipeline.observer import StageScope
from coda_lite.pipeline.stages import TTS
from coda_lite.speech.sentences import SentenceSplitter


class StageTimeoutError(TimeoutError):
    """A stage did not finish within its deadline (``ConversationManager(stage_timeouts=)``)."""


StageRunner = Callable[[Callable[[StageScope], Awaitable[bytes]]], Awaitable[bytes]]


async def _pieces(
    llm: Any, query: str, context: Sequence[Mapping[str, Any]], streaming: bool
) -> AsyncIterator[str | LLMResult]:
    """The model's text as it comes (``stream``), or whole (``generate``) when not streaming."""
    stream = getattr(llm, "stream", None) if streaming else None
    if stream is not None:
        async for item in stream(query, context):
            yield item
        return
    result = await llm.generate(query, context)
    yield result.text
    yield result


def concat_wav(chunks: Sequence[bytes]) -> bytes:
    """One WAV of the chunks' audio in order (all from one synthesizer: same format)."""
    chunks = [c for c in chunks if c]
    if len(chunks) <= 1:
        return chunks[0] if chunks else b""
    out = io.BytesIO()
    with wave.open(io.BytesIO(chunks[0])) as first, wave.open(out, "wb") as w:
        w.setparams(first.getparams())
        for chunk in chunks:
            with wave.open(io.BytesIO(chunk)) as r:
                w.writeframes(r.readframes(r.getnframes()))
    return out.getvalue()


class Reply:
    """One turn's answer: written by :meth:`think`, spoken by :meth:`speak`, concurrently."""

    def __init__(
        self,
        llm: Any,
        tts: TTS,
        clock: TurnClock,
        *,
        streaming: bool,
        sentence_deadline: float | None = None,
        first_phrase_words: int = 0,
    ) -> None:
        self.llm = llm
        self.tts = tts
        self.clock = clock
        self.streaming = streaming
        self.sentence_deadline = sentence_deadline  # s one sentence's synthesis may take
        self.first_phrase_words = first_phrase_words  # the first piece may be a phrase this long
        self._sentences: asyncio.Queue[str | None] = asyncio.Queue()
        self.generated_chars = 0  # the model's text so far
        self.generated_sentences = 0  # complete sentences queued for speech
        self.spoken_sentences = 0  # sentences synthesized
        self.spoken_chars = 0

    def progress(self) -> dict[str, int]:
        """How much of the answer exists and how much was spoken (for an interrupted turn)."""
        return {
            "generated_chars": self.generated_chars,
            "generated_sentences": self.generated_sentences,
            "spoken_sentences": self.spoken_sentences,
            "spoken_chars": self.spoken_chars,
        }

    def _say(self, sentence: str) -> None:
        self.clock.mark_once("first_sentence")
        self.generated_sentences += 1
        self._sentences.put_nowait(sentence)

    async def think(
        self, st: StageScope, query: str, context: Sequence[Mapping[str, Any]]
    ) -> LLMResult:
        """The llm stage: stream the answer, queue each complete sentence for speech."""
        splitter = SentenceSplitter(first_phrase_words=self.first_phrase_words)
        clock, result = self.clock, None
        clock.mark("llm_start")
        try:
            async for item in _pieces(self.llm, query, context, self.streaming):
                if isinstance(item, LLMResult):
                    result = item
                    continue
                clock.mark_once("first_token")
                clock.mark("last_token")
                st.mark_progress()
                self.generated_chars += len(item)
                if self.streaming:
                    for sentence in splitter.feed(item):
                        self._say(sentence)
            if result is None:
                raise RuntimeError(f"{type(self.llm).__name__} gave no result")
            rest = splitter.flush() if self.streaming else result.text.strip()
            if rest:
                self._say(rest)
            clock.mark("llm_end")
        finally:
            self._sentences.put_nowait(None)  # the speaker stops after the last sentence
        m = clock.marks
        ttft = (m["first_token"] - m["llm_start"]) / 1e6 if "first_token" in m else None
        st.set_llm_usage(
            model=result.model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            provider=result.provider or None,
            streamed=self.streaming,
            time_to_first_chunk_s=ttft,
            messages=result.prompt,
            response=result.text,
            response_model=result.response_model or None,
            finish_reason=result.finish_reason,
        )
        st.set_output({"response": result.text})
        return result

    async def speak(self, run_stage: StageRunner) -> bytes:
        """Wait for the first sentence, then run the tts stage (``run_stage(work)``)."""
        first = await self._sentences.get()
        if first is None:
            return b""  # the model said nothing (or failed): no speech, no tts stage
        return await run_stage(lambda st: self._speak(st, first))

    async def _synthesize(self, sentence: str) -> bytes:
        deadline = self.sentence_deadline
        if deadline is None:
            return await self.tts.synthesize(sentence)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deadline):
                return await self.tts.synthesize(sentence)
        except TimeoutError as exc:
            if time.perf_counter() - started < deadline:
                raise  # the synthesizer's own timeout, not the deadline
            raise StageTimeoutError(
                f"tts did not finish a sentence within its {deadline:g} s deadline"
            ) from exc

    async def _speak(self, st: StageScope, first: str) -> bytes:
        chunks: list[bytes] = []
        texts: list[str] = []
        sentence: str | None = first
        while sentence is not None:
            start = self.clock.mark("tts_start") if not chunks else now_us()
            audio = await self._synthesize(sentence)
            end = now_us()
            if not chunks:
                self.clock.marks["first_audio"] = end
            st.add_event(
                "tts.sentence",
                {
                    "coda.tts.sentence.index": len(chunks),
                    "coda.tts.sentence.chars": len(sentence),
                    "coda.tts.sentence.audio_bytes": len(audio),
                    "coda.tts.sentence.synthesis_seconds": (end - start) / 1e6,
                },
                content=sentence,
            )
            chunks.append(audio)
            texts.append(sentence)
            self.spoken_sentences += 1
            self.spoken_chars += len(sentence)
            sentence = await self._sentences.get()
        audio = concat_wav(chunks)
        st.set_output(
            {"audio_bytes": len(audio), "sentences": len(chunks), "text": " ".join(texts)}
        )
        return audio
