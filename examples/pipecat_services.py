"""Coda Lite's speech recognizer, model and synthesizer as Pipecat processors (all offline).

    stt = CodaLiteSTTService(PocketSphinxSTT())   # input audio between the user's start/stop
    llm = CodaLiteLLMService(make_llm(LlmConfig(backend="auto")))   # transcript -> LLM frames
    tts = CodaLiteTTSService(EspeakTTS())         # LLM text -> TTSStarted / audio / TTSStopped
    pipeline = Pipeline([stt, llm, tts])
    frames = user_speech(wav)                  # what a transport with VAD would push

They push the frames Pipecat's own services push (transcriptions, the LLM response frames,
TTS frames, ``MetricsFrame`` with TTFB, processing time and usage when the worker enables
metrics), so any observer sees them as it would see a cloud service. They know nothing of
coda-otel.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import LLMTokenUsage, MetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from coda_lite.llm.types import LLMResult
from coda_lite.speech.audio import to_pcm16_mono, wav_bytes
from coda_lite.speech.sentences import SentenceSplitter

RATE = 16000
CHUNK_S = 0.02  # one input audio frame: 20 ms, as a transport sends them


class Recognizer(Protocol):
    async def transcribe(self, audio: bytes) -> str: ...


class Model(Protocol):
    model: str
    provider: str

    def stream(
        self, query: str, context: Sequence[Mapping[str, Any]]
    ) -> AsyncIterator[str | LLMResult]: ...


class Synthesizer(Protocol):
    async def synthesize(self, text: str) -> bytes: ...


def user_speech(wav: bytes) -> list[Frame]:
    """The frames a transport with VAD pushes for one utterance: start, 20 ms chunks, stop."""
    pcm = to_pcm16_mono(wav, rate=RATE)
    step = int(RATE * CHUNK_S) * 2
    chunks: list[Frame] = [
        InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=RATE, num_channels=1)
        for i in range(0, len(pcm), step)
    ]
    return [UserStartedSpeakingFrame(), *chunks, UserStoppedSpeakingFrame()]


class CodaLiteSTTService(FrameProcessor):  # type: ignore[misc]
    """Buffers the user's audio; when the user stops, transcribes it and pushes the text."""

    def __init__(self, stt: Recognizer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stt = stt
        self._audio: list[bytes] | None = None

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, UserStartedSpeakingFrame):
            self._audio = []
        elif isinstance(frame, InputAudioRawFrame) and self._audio is not None:
            self._audio.append(frame.audio)
            return  # consumed: recognized here
        await self.push_frame(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame) and self._audio is not None:
            pcm, self._audio = b"".join(self._audio), None
            await self.start_processing_metrics()
            try:
                text = await self.stt.transcribe(wav_bytes(pcm, rate=RATE))
            except Exception as exc:
                await self.push_error(f"speech recognition failed: {exc}", exception=exc)
                return
            finally:
                await self.stop_processing_metrics()
            stamp = datetime.now(UTC).isoformat()
            await self.push_frame(TranscriptionFrame(text, "user", stamp, finalized=True))


class CodaLiteLLMService(FrameProcessor):  # type: ignore[misc]
    """Answers each final transcription with Coda Lite's model, streamed as LLM frames."""

    def __init__(self, llm: Model, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.llm = llm
        # the model's name travels with this processor's metrics (as a Pipecat service's does)
        self.set_core_metrics_data(MetricsData(processor=self.name, model=llm.model))

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            await self._answer(frame.text)

    async def _answer(self, text: str) -> None:
        await self.push_frame(LLMFullResponseStartFrame())
        await self.start_processing_metrics()
        await self.start_ttfb_metrics()
        try:
            async for piece in self.llm.stream(text, []):
                if isinstance(piece, LLMResult):
                    await self.start_llm_usage_metrics(
                        LLMTokenUsage(
                            prompt_tokens=piece.input_tokens,
                            completion_tokens=piece.output_tokens,
                            total_tokens=piece.input_tokens + piece.output_tokens,
                        )
                    )
                elif piece:
                    await self.stop_ttfb_metrics()
                    await self.push_frame(LLMTextFrame(piece))
        except Exception as exc:
            await self.push_error(f"the model failed: {exc}", exception=exc)
        finally:
            await self.stop_processing_metrics()
            await self.push_frame(LLMFullResponseEndFrame())


class CodaLiteTTSService(FrameProcessor):  # type: ignore[misc]
    """Speaks the answer sentence by sentence with Coda Lite's synthesizer."""

    def __init__(self, tts: Synthesizer, *, chunk_s: float = 0.1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tts = tts
        self.chunk_s = chunk_s
        self._splitter = SentenceSplitter()
        self._started = False

    def can_generate_metrics(self) -> bool:
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMFullResponseStartFrame):
            self._splitter, self._started = SentenceSplitter(), False
        elif isinstance(frame, LLMTextFrame):
            for sentence in self._splitter.feed(frame.text):
                await self._speak(sentence)
            return  # the text is spoken, not passed on
        elif isinstance(frame, LLMFullResponseEndFrame):
            rest = self._splitter.flush()
            if rest:
                await self._speak(rest)
            if self._started:
                await self.push_frame(TTSStoppedFrame())
                self._started = False
        await self.push_frame(frame, direction)

    async def _speak(self, sentence: str) -> None:
        if not self._started:
            self._started = True
            await self.push_frame(TTSStartedFrame())
        await self.start_ttfb_metrics()
        await self.start_tts_usage_metrics(sentence)
        try:
            wav = await self.tts.synthesize(sentence)
        except Exception as exc:
            await self.push_error(f"speech synthesis failed: {exc}", exception=exc)
            return
        await self.stop_ttfb_metrics()
        with wave.open(io.BytesIO(wav)) as w:
            rate, channels = w.getframerate(), w.getnchannels()
            pcm = w.readframes(w.getnframes())
        step = max(2, int(rate * self.chunk_s) * 2 * channels)
        for i in range(0, len(pcm), step):
            await self.push_frame(
                TTSAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate, num_channels=channels)
            )
        await self.push_frame(TTSTextFrame(sentence, "sentence"))
