"""A Pipecat observer that records each user turn as a coda-otel turn with its stages.

Attach it to a ``PipelineWorker``; it needs nothing else from the pipeline::

    debugger = ConversationPipelineDebugger(listeners=[PipelineMetrics(metrics), hub],
                                            stall_budgets={"llm": 5.0, "tts": 5.0})
    observer = CodaObserver(debugger, metrics=metrics, session_id="call-42")
    worker = PipelineWorker(pipeline, observers=[observer],
                            params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))

What it turns into what (one root span ``conversation`` per user turn):

* ``stt``: from ``UserStartedSpeakingFrame`` (or the first transcript of a turn without one)
  until the turn's final ``TranscriptionFrame`` after ``UserStoppedSpeakingFrame``;
  interim transcripts and input audio are its progress (for its stall budget).
* ``llm``: ``LLMFullResponseStartFrame`` to ``LLMFullResponseEndFrame``; each ``LLMTextFrame``
  is progress, the first one its time to first token; GenAI usage (model, provider, tokens from
  the service's usage metrics when it reports them, else a word count) via ``set_llm_usage``.
* ``tts``: the first ``TTSStartedFrame`` of the answer to the ``TTSStoppedFrame`` after the
  answer ended; the first ``TTSAudioRawFrame`` is its first audio, every chunk progress.
  That ``TTSStoppedFrame`` (or ``BotStoppedSpeakingFrame``) ends the turn.
* an ``InterruptionFrame`` while the answer runs ends the turn ``interrupted``
  (``interrupted_by``: ``new_turn`` when the user started speaking, else ``command``; with
  ``spoken_chars`` and ``generated_chars``); its open stages end ``cancelled``.
* an ``ErrorFrame`` fails the stage of the processor that pushed it (``error.type`` is the
  exception's class when the frame carries one).
* ``MetricsFrame`` items go to Prometheus (:mod:`.service_metrics`) when ``metrics`` is given.
* ``EndFrame`` completes an unfinished turn; ``CancelFrame`` (or the worker tearing the
  observer down first) cancels it.

The voice latency (:mod:`.clock`) is measured on the pipeline clock's frame timestamps and set
on the turn (``conv.set_latency``): its breakdown adds up to voice-to-voice exactly.

Pipecat calls an observer from a task of its own (one queue per observer), so nothing here
runs on a processor's path; the work per frame is a type lookup, and a failure is logged,
never raised into Pipecat.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    ErrorFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import LLMUsageMetricsData, ProcessingMetricsData, TTFBMetricsData
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection

from coda_otel.integrations.pipecat.clock import TurnClock
from coda_otel.integrations.pipecat.service_metrics import ServiceMetrics
from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)

__all__ = ["NEW_TURN", "CodaObserver", "PipecatError"]

NEW_TURN = "new_turn"  # the user started speaking over the answer (barge-in)
COMMAND = "command"  # anything else that pushed an interruption (the app, a debug client)
INTERRUPTED = "interrupted"


class PipecatError(RuntimeError):
    """An ``ErrorFrame`` that carries no exception: its message, as the stage's error."""


class _StageScope(Protocol):
    def set_output(self, output: Mapping[str, Any]) -> None: ...
    def set_llm_usage(self, *, model: str, input_tokens: int, output_tokens: int,
                      **extra: Any) -> None: ...  # fmt: skip
    def mark_progress(self) -> None: ...
    def add_event(self, name: str, attributes: Mapping[str, Any],
                  content: str | None = None) -> None: ...  # fmt: skip
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc_info: Any) -> None: ...


class _ConversationScope(Protocol):
    conversation_id: str

    def stage(self, name: str, inputs: Mapping[str, Any]) -> Any: ...
    def set_latency(self, latency: Mapping[str, Any]) -> None: ...
    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(self, *exc_info: Any) -> None: ...


class _Debugger(Protocol):
    def conversation(
        self, *, session_id: str | None = None, turn: int = 1, conversation_id: str | None = None
    ) -> Any: ...


@dataclass
class _Open:
    """An open stage scope and the context it was entered in (it must exit in the same)."""

    scope: _StageScope
    ctx: contextvars.Context


@dataclass
class _Turn:
    number: int
    conv: _ConversationScope
    ctx: contextvars.Context
    clock: TurnClock = field(default_factory=TurnClock)
    stages: dict[str, _Open] = field(default_factory=dict)
    transcript: list[str] = field(default_factory=list)
    response: list[str] = field(default_factory=list)
    generated_chars: int = 0
    spoken_chars: int = 0
    audio_bytes: int = 0
    usage: LLMUsageMetricsData | None = None
    llm_model: str = ""
    llm_provider: str = ""
    speech_ended: bool = False
    answering: bool = False
    llm_done: bool = False
    error: BaseException | None = None


def _exit(cm: Any, ctx: contextvars.Context, exc: BaseException | None) -> None:
    ctx.run(cm.__exit__, type(exc) if exc is not None else None, exc, None)


def _provider(processor: Any) -> str:
    """``gen_ai.provider.name`` from a service's class: ``OpenAILLMService`` -> ``openai``."""
    name = type(processor).__name__
    for suffix in ("LLMService", "Service", "Processor"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)].lower()
    return name.lower()


class CodaObserver(BaseObserver):  # type: ignore[misc]
    """Pipecat frames in, coda-otel turns out (see the module docstring)."""

    def __init__(
        self,
        debugger: _Debugger,
        *,
        metrics: CodaMetrics | None = None,
        session_id: str | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        super().__init__(observe_every_push=False)
        self.debugger = debugger
        self.session_id = session_id or uuid.uuid4().hex
        self.service_metrics = ServiceMetrics(metrics) if metrics is not None else None
        self.turns = 0
        self.failures = 0
        self._on_error = on_error
        self._listening: _Turn | None = None  # the user's turn being heard
        self._answering: _Turn | None = None  # the turn being answered
        self._stage_of: dict[int, str] = {}  # processor id -> the stage its frames showed
        self._stage_by_name: dict[str, str] = {}  # the same by name (metrics carry names)
        self._pending: dict[str, list[Any]] = {}  # metrics of processors not placed yet
        self._handlers: dict[type, Callable[[FramePushed], None] | None] = {}
        self._by_type: tuple[tuple[type, Callable[[FramePushed], None]], ...] = (
            (InputAudioRawFrame, self._audio_in),
            (UserStartedSpeakingFrame, self._user_started),
            (UserStoppedSpeakingFrame, self._user_stopped),
            (InterimTranscriptionFrame, self._interim),
            (TranscriptionFrame, self._transcription),
            (LLMFullResponseStartFrame, self._llm_start),
            (LLMTextFrame, self._llm_text),
            (LLMFullResponseEndFrame, self._llm_end),
            (TTSStartedFrame, self._tts_start),
            (TTSAudioRawFrame, self._tts_audio),
            (TTSTextFrame, self._tts_text),
            (TTSStoppedFrame, self._tts_stop),
            (BotStoppedSpeakingFrame, self._tts_stop),
            (InterruptionFrame, self._interruption),
            (ErrorFrame, self._error),
            (MetricsFrame, self._metrics),
            (EndFrame, self._end),
            (CancelFrame, self._end),
        )

    # --- Pipecat's hook -----------------------------------------------------------------
    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        handler = self._handler(type(frame))
        if handler is None:
            return
        # A broadcast frame travels as two twins; the downstream one stands for both.
        if data.direction == FrameDirection.UPSTREAM and frame.broadcast_sibling_id is not None:
            return
        try:
            handler(data)
        except Exception as exc:
            self.failures += 1
            logger.warning("coda observer: could not record %s", frame.name, exc_info=True)
            if self._on_error is not None:
                self._on_error(exc)

    @property
    def answering(self) -> str | None:
        """The conversation id of the turn being answered now (model or speech running)."""
        turn = self._answering
        return turn.conv.conversation_id if turn is not None else None

    async def cleanup(self) -> None:
        """The pipeline is torn down: a turn still open ends ``cancelled`` (never left open)."""
        await super().cleanup()  # type: ignore[no-untyped-call]
        try:
            self._finish_all(asyncio.CancelledError("pipeline stopped"))
        except Exception:
            logger.warning("coda observer: could not end the open turns", exc_info=True)

    def _handler(self, kind: type) -> Callable[[FramePushed], None] | None:
        try:
            return self._handlers[kind]
        except KeyError:
            found = next((h for base, h in self._by_type if issubclass(kind, base)), None)
            self._handlers[kind] = found
            return found

    # --- turns and stages ---------------------------------------------------------------
    def _new_turn(self) -> _Turn:
        self.turns += 1
        conv = self.debugger.conversation(session_id=self.session_id, turn=self.turns)
        ctx = contextvars.Context()  # the turn's spans never nest under whatever runs here
        ctx.run(conv.__enter__)
        return _Turn(self.turns, conv, ctx)

    def _open(self, turn: _Turn, name: str, inputs: Mapping[str, Any]) -> _Open:
        scope = turn.conv.stage(name, inputs)
        ctx = turn.ctx.copy()  # a child of the turn's root span, with its own current span
        ctx.run(scope.__enter__)
        opened = turn.stages[name] = _Open(scope, ctx)
        return opened

    def _close(self, turn: _Turn, name: str, exc: BaseException | None = None) -> None:
        opened = turn.stages.pop(name, None)
        if opened is not None:
            _exit(opened.scope, opened.ctx, exc)

    def _close_stt(self, turn: _Turn) -> None:
        opened = turn.stages.get("stt")
        if opened is None:
            return
        text = " ".join(turn.transcript)
        opened.scope.set_output({"transcript": text, "chars": len(text)})
        self._close(turn, "stt")

    def _close_llm(self, turn: _Turn) -> None:
        opened = turn.stages.get("llm")
        if opened is None:
            return
        text = "".join(turn.response)
        opened.scope.set_output({"response": text, "chars": turn.generated_chars})
        usage = turn.usage.value if turn.usage is not None else None
        model = (turn.usage.model if turn.usage is not None else None) or turn.llm_model
        marks = turn.clock.marks
        ttfc = None
        if "first_token" in marks and "llm_start" in marks:
            ttfc = (marks["first_token"] - marks["llm_start"]) / 1e6
        opened.scope.set_llm_usage(
            model=model or "unknown",
            input_tokens=usage.prompt_tokens if usage is not None else 0,
            output_tokens=usage.completion_tokens if usage is not None else len(text.split()),
            provider=turn.llm_provider or None,
            streamed=True,
            time_to_first_chunk_s=ttfc,
            messages=[{"role": "user", "content": " ".join(turn.transcript)}],
            response=text,
        )
        self._close(turn, "llm")

    def _finish(self, turn: _Turn, exc: BaseException | None = None) -> None:
        """End the turn: its open stages first (cancelled when ``exc`` is), then the root."""
        if self._listening is turn:
            self._listening = None
        if self._answering is turn:
            self._answering = None
        if exc is None:
            self._close_stt(turn)
            self._close_llm(turn)
        for name in list(turn.stages):
            if exc is None and name == "tts":
                turn.stages[name].scope.set_output(
                    {"spoken_chars": turn.spoken_chars, "audio_bytes": turn.audio_bytes}
                )
            self._close(turn, name, exc)
        usage = turn.usage.value if turn.usage is not None else None
        latency = turn.clock.measure(
            output_tokens=usage.completion_tokens if usage is not None else None
        )
        if latency is not None:
            turn.conv.set_latency(latency)
        _exit(turn.conv, turn.ctx, exc if exc is not None else turn.error)

    def _stage_for(self, processor: Any, stage: str) -> None:
        if id(processor) in self._stage_of:
            return
        self._stage_of[id(processor)] = stage
        name = str(getattr(processor, "name", ""))
        self._stage_by_name[name] = stage
        if self.service_metrics is not None:
            for item in self._pending.pop(name, ()):
                self.service_metrics.record(stage, item)

    # --- handlers (one per frame kind) ---------------------------------------------------
    def _audio_in(self, data: FramePushed) -> None:
        turn = self._listening
        if turn is not None and "stt" in turn.stages:
            turn.stages["stt"].scope.mark_progress()

    def _listen(self) -> _Turn:
        turn = self._listening
        if turn is None:
            turn = self._listening = self._new_turn()
            self._open(turn, "stt", {"session_id": self.session_id})
        return turn

    def _user_started(self, data: FramePushed) -> None:
        self._listen().clock.mark("speech_start", data.timestamp)

    def _user_stopped(self, data: FramePushed) -> None:
        turn = self._listening
        if turn is None:
            return
        turn.speech_ended = True
        turn.clock.mark("speech_end", data.timestamp)
        if turn.transcript:
            self._close_stt(turn)

    def _interim(self, data: FramePushed) -> None:
        self._stage_for(data.source, "stt")
        turn = self._listen()
        if "stt" in turn.stages:
            turn.stages["stt"].scope.mark_progress()

    def _transcription(self, data: FramePushed) -> None:
        self._stage_for(data.source, "stt")
        frame = cast(TranscriptionFrame, data.frame)
        turn = self._listen()
        turn.transcript.append(str(frame.text))
        turn.clock.mark("transcript", data.timestamp)
        if "stt" in turn.stages:
            turn.stages["stt"].scope.add_event("transcript", {"chars": len(frame.text)})
        if turn.speech_ended:
            self._close_stt(turn)

    def _llm_start(self, data: FramePushed) -> None:
        self._stage_for(data.source, "llm")
        previous = self._answering
        if previous is not None:
            self._finish(previous)  # a new answer begins: the last one has ended
        turn = self._listening or self._new_turn()
        self._listening = None
        self._close_stt(turn)
        self._answering = turn
        turn.answering = True
        turn.llm_provider = _provider(data.source)
        turn.llm_model = _model_of(data.source)
        turn.clock.mark("llm_start", data.timestamp)
        self._open(turn, "llm", {"transcript": " ".join(turn.transcript)})

    def _llm_text(self, data: FramePushed) -> None:
        turn = self._answering
        if turn is None or turn.llm_done:
            return
        text = str(cast(LLMTextFrame, data.frame).text)
        turn.response.append(text)
        turn.generated_chars += len(text)
        turn.clock.mark_once("first_token", data.timestamp)
        turn.clock.mark("last_token", data.timestamp)
        for name in ("llm", "tts"):  # a synthesizer fed text is waiting, not stuck
            opened = turn.stages.get(name)
            if opened is not None:
                opened.scope.mark_progress()

    def _llm_end(self, data: FramePushed) -> None:
        turn = self._answering
        if turn is None or turn.llm_done:
            return
        turn.llm_done = True
        self._close_llm(turn)
        if turn.generated_chars == 0 and "tts" not in turn.stages:
            self._finish(turn)  # nothing to speak: the answer is over

    def _tts_start(self, data: FramePushed) -> None:
        self._stage_for(data.source, "tts")
        turn = self._answering
        if turn is None or "tts" in turn.stages or turn.clock.has("tts_start"):
            return
        turn.clock.mark_once("tts_start", data.timestamp)
        self._open(turn, "tts", {"chars": turn.generated_chars})

    def _tts_audio(self, data: FramePushed) -> None:
        turn = self._answering
        opened = turn.stages.get("tts") if turn is not None else None
        if turn is None or opened is None:
            return
        size = len(cast(TTSAudioRawFrame, data.frame).audio)
        turn.audio_bytes += size
        if not turn.clock.has("first_audio"):
            turn.clock.mark_once("first_audio", data.timestamp)
            opened.scope.add_event("first_audio", {"bytes": size})
        else:
            opened.scope.mark_progress()

    def _tts_text(self, data: FramePushed) -> None:
        turn = self._answering
        if turn is not None:
            turn.spoken_chars += len(str(cast(TTSTextFrame, data.frame).text))

    def _tts_stop(self, data: FramePushed) -> None:
        turn = self._answering
        if turn is not None and turn.llm_done and "tts" in turn.stages:
            self._finish(turn)

    def _interruption(self, data: FramePushed) -> None:
        turn = self._answering
        if turn is None:
            return  # nothing was being answered: a user turn starting, not a barge-in
        source = NEW_TURN if self._listening is not None else COMMAND
        turn.conv.set_end_reason(
            INTERRUPTED,
            {
                "interrupted_by": source,
                "spoken_chars": turn.spoken_chars,
                "generated_chars": turn.generated_chars,
            },
        )
        self._finish(turn, asyncio.CancelledError(f"{INTERRUPTED} by {source}"))

    def _error(self, data: FramePushed) -> None:
        frame = cast(ErrorFrame, data.frame)
        processor = frame.processor if frame.processor is not None else data.source
        exc: BaseException = (
            frame.exception if frame.exception is not None else PipecatError(frame.error)
        )
        stage = self._stage_of.get(id(processor)) or _service_stage(processor)
        turn = self._answering if stage in ("llm", "tts") else None
        turn = turn or self._listening or self._answering
        if turn is None:  # an error between turns: a turn of its own, so it is seen
            turn = self._new_turn()
            self._finish_with_error(turn, stage or "pipeline", exc)
            return
        if stage is None:  # a processor that is no service: the stage running now
            stage = next(reversed(turn.stages), None)
        if stage is None:
            turn.error = turn.error or exc
            return
        if stage not in turn.stages:
            self._open(turn, stage, {"processor": getattr(processor, "name", "?")})
        self._close(turn, stage, exc)

    def _finish_with_error(self, turn: _Turn, stage: str, exc: BaseException) -> None:
        self._open(turn, stage, {})
        self._close(turn, stage, exc)
        self._finish(turn)

    def _metrics(self, data: FramePushed) -> None:
        frame = cast(MetricsFrame, data.frame)
        for item in frame.data:
            if isinstance(item, LLMUsageMetricsData) and self._answering is not None:
                self._answering.usage = item
            if self.service_metrics is None or _empty(item):
                continue
            name = str(item.processor)
            stage = self._stage_by_name.get(name)
            if stage is None and getattr(data.source, "name", None) == name:
                stage = _service_stage(data.source)
            if stage is not None:
                self.service_metrics.record(stage, item)
                continue
            # a processor whose frames have not shown its stage yet (an STT's processing
            # time comes before its transcript): kept until they do, within bounds
            pending = self._pending.setdefault(name, []) if len(self._pending) < 64 else None
            if pending is not None and len(pending) < 64:
                pending.append(item)
            else:
                self.service_metrics.record("other", item)

    def _end(self, data: FramePushed) -> None:
        cancelled = isinstance(data.frame, CancelFrame)
        self._finish_all(asyncio.CancelledError("pipeline cancelled") if cancelled else None)

    def _finish_all(self, exc: BaseException | None) -> None:
        for turn in (self._answering, self._listening):
            if turn is not None:
                self._finish(turn, exc)


def _empty(item: Any) -> bool:
    """Pipecat's initial "empty" metrics (a zero TTFB and processing time per processor)."""
    return isinstance(item, TTFBMetricsData | ProcessingMetricsData) and item.value == 0.0


def _model_of(processor: Any) -> str:
    """The service's model name (Pipecat keeps it in its settings), else ''."""
    settings = getattr(processor, "settings", None)
    model = getattr(settings, "model", None)
    return model if isinstance(model, str) else ""


def _service_stage(processor: Any) -> str | None:
    """The stage of a Pipecat AI service by its base class, None for any other processor."""
    from pipecat.services.llm_service import LLMService
    from pipecat.services.stt_service import STTService
    from pipecat.services.tts_service import TTSService

    for base, stage in ((STTService, "stt"), (LLMService, "llm"), (TTSService, "tts")):
        if isinstance(processor, base):
            return stage
    return None
