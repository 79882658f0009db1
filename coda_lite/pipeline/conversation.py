"""One conversation turn: stt -> memory_retrieval -> llm (+ tts, overlapping) -> memory_update.

    manager = ConversationManager(stt, memory, llm, tts)          # observer: NULL_OBSERVER
    result = await manager.process_user_input("Where do I live?", session_id="s1")
    await manager.process_user_input("Where do I live?", session_id="s2", user_id="ada")
    result.response, result.timings["llm"], result.conversation_id
    result.latency.voice_to_voice_us, result.latency.breakdown_us   # see coda_lite.pipeline.latency

The model's text streams into speech (:mod:`coda_lite.pipeline.reply`): the tts stage starts at the
first complete sentence and synthesizes the answer sentence by sentence while the model
writes; the turn's audio is the concatenation. ``streaming=False`` waits for the whole
answer, then speaks it in one piece (the baseline the benchmarks compare with).

Text input skips recognition (the stt stage says ``skipped: True``); ``bytes`` or a path is
audio. Every stage runs inside ``observer.conversation(...)`` / ``conv.stage(name, inputs)``
(see :mod:`coda_lite.pipeline.observer`), so whoever observes sees the stage boundaries; this module
has no telemetry of its own. Memory is read and written for one owner: ``user_id``, else
``session_id``, else ``"default"`` (:func:`memory_owner`). A failing stage raises
:class:`StageError` naming the stage; the next turn is unaffected. The exchange is remembered
(``memory_update``) only once the answer was spoken: a turn whose speech failed remembers
nothing. A failed ``memory_update`` (a full disk, a locked database) does not fail the turn:
the answer is returned with a warning in ``TurnResult.warnings``, and the stage's failure is
observed as any other.
With an ``admission`` (:mod:`coda_lite.pipeline.admission`), a turn first waits for a slot,
or is refused with ``Overloaded`` before it starts. A new turn in a session interrupts the
one still running there (barge-in, see
:mod:`coda_lite.pipeline.turns`; ``manager.live`` also stops a turn whose client left): the old turn
is cancelled, ends with the reason ``interrupted`` and never reaches its memory update.
``stage_timeouts`` gives each stage a deadline; while speech streams, the tts stage lasts as
long as the model writes, so its deadline bounds each sentence's synthesis instead. A passed
deadline is told to ``on_deadline(stage, message)`` directly (the composition root marks the
stage's component unhealthy with it), whether or not anyone observes the turn.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachetools import LRUCache

from coda_lite.memory.long_term import DEFAULT_OWNER
from coda_lite.pipeline.admission import Admission
from coda_lite.pipeline.latency import TurnClock, TurnLatency, measure
from coda_lite.pipeline.observer import (
    NULL_OBSERVER,
    ConversationScope,
    PipelineObserver,
    StageScope,
)
from coda_lite.pipeline.reply import Reply
from coda_lite.pipeline.reply import StageTimeoutError as StageTimeoutError  # raised by stages too
from coda_lite.pipeline.stages import LLM, STT, TTS, Memory
from coda_lite.pipeline.turns import LiveTurn, LiveTurns, guarded

STAGES = ("stt", "memory_retrieval", "llm", "memory_update", "tts")
T = TypeVar("T")


class StageError(RuntimeError):
    """A pipeline stage failed. ``.stage`` names it; ``__cause__`` is the original error."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} stage failed: {type(cause).__name__}: {cause}")
        self.stage = stage


@dataclass
class TurnResult:
    transcript: str
    response: str
    audio: bytes
    conversation_id: str
    trace_id: str | None
    session_id: str | None
    turn: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    memories_used: list[dict[str, Any]] = field(default_factory=list)
    latency: TurnLatency | None = None  # None when the turn produced no speech
    warnings: list[str] = field(default_factory=list)  # what went wrong without failing the turn


def memory_owner(user_id: str | None, session_id: str | None) -> str:
    """Whose memory a turn reads and writes: the user, else the session, else the default."""
    return user_id or session_id or DEFAULT_OWNER


class ConversationManager:
    def __init__(
        self,
        stt: STT,
        memory: Memory,
        llm: LLM,
        tts: TTS,
        observer: PipelineObserver = NULL_OBSERVER,
        *,
        max_sessions: int = 10_000,
        streaming: bool = True,
        stage_timeouts: Mapping[str, float] | None = None,
        on_deadline: Callable[[str, str], None] | None = None,
        admission: Admission | None = None,
        first_phrase_words: int = 0,
    ) -> None:
        self.stt = stt
        self.memory = memory
        self.llm = llm
        self.tts = tts
        self.observer = observer
        self.streaming = streaming  # speak sentence by sentence while the model still writes
        self.stage_timeouts = dict(stage_timeouts or {})  # stage -> seconds; none: no deadline
        self.on_deadline = on_deadline  # told of every passed deadline: (stage, message)
        self.admission = admission  # None: every turn starts at once
        self.first_phrase_words = first_phrase_words  # speech may start after a phrase this long
        self._turns: LRUCache[str, int] = LRUCache(maxsize=max_sessions)
        self._turns_lock = threading.Lock()
        self.live = LiveTurns()  # running turns, so a newer one can interrupt them

    def _next_turn(self, session_id: str | None) -> int:
        key = session_id if session_id is not None else "\0default"
        with self._turns_lock:
            n = self._turns.get(key, 0) + 1
            self._turns[key] = n
            return n

    async def process_user_input(
        self,
        user_input: str | bytes | os.PathLike[str],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> TurnResult:
        if not isinstance(user_input, (str, bytes, bytearray, os.PathLike)):
            raise TypeError(
                "user input must be text (str), WAV bytes or a WAV path; "
                f"got {type(user_input).__name__}"
            )
        clock = TurnClock()  # the input is complete: the user stopped speaking
        turn = self._next_turn(session_id)
        owner = memory_owner(user_id, session_id)
        # barge-in: a new turn in a session stops the one still answering there
        await self.live.interrupt_session(session_id, "new_turn")
        if self.admission is None:
            return await self._observed_turn(user_input, clock, turn, owner, session_id)
        async with self.admission.slot():  # Overloaded: refused before it started
            return await self._observed_turn(user_input, clock, turn, owner, session_id)

    async def _observed_turn(
        self,
        user_input: str | bytes | os.PathLike[str],
        clock: TurnClock,
        turn: int,
        owner: str,
        session_id: str | None,
    ) -> TurnResult:
        with self.observer.conversation(session_id=session_id, turn=turn) as conv:
            live = self.live.start(session_id, conv)
            try:
                return await self._turn(conv, live, user_input, clock, turn, owner, session_id)
            except asyncio.CancelledError:
                self.live.record_interruption(live)  # not a failure: how much was spoken
                raise
            finally:
                self.live.finish(live)

    async def process_guarded(
        self,
        user_input: str | bytes | os.PathLike[str],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> TurnResult:
        """:meth:`process_user_input` for a client: the turn runs in its own task; a cancelled
        caller (the client left) interrupts it, and a turn interrupted by someone else raises
        :class:`~coda_lite.pipeline.turns.TurnInterrupted`."""
        turn = asyncio.ensure_future(
            self.process_user_input(user_input, session_id=session_id, user_id=user_id)
        )
        return await guarded(turn, self.live)

    async def interrupt(self, session_id: str, source: str = "command") -> str | None:
        """Cut short ``session_id``'s running turn; its conversation id, or None if none ran."""
        turn = await self.live.interrupt_session(session_id, source)
        return turn.conv.conversation_id if turn is not None else None

    async def _turn(
        self,
        conv: ConversationScope,
        live: LiveTurn | None,
        user_input: str | bytes | os.PathLike[str],
        clock: TurnClock,
        turn: int,
        owner: str,
        session_id: str | None,
    ) -> TurnResult:
        timings: dict[str, float] = {}

        async def stage(
            name: str, inputs: Mapping[str, Any], work: Callable[[StageScope], Awaitable[T]]
        ) -> T:
            try:
                return await _run_stage(conv, name, inputs, work, timings, self._deadline(name))
            except StageError as exc:
                if isinstance(exc.__cause__, StageTimeoutError) and self.on_deadline is not None:
                    self.on_deadline(name, str(exc.__cause__))
                raise

        transcript = await stage("stt", _stt_inputs(user_input), self._stt_work(user_input, clock))

        async def retrieve(st: StageScope) -> list[dict[str, Any]]:
            clock.mark("retrieval_start")
            ctx = await self.memory.get_context(transcript, owner=owner)
            clock.mark("retrieval_end")
            st.set_output({"memories": len(ctx), "context": ctx})
            return ctx

        context = await stage("memory_retrieval", {"query": transcript}, retrieve)
        reply = Reply(
            self.llm,
            self.tts,
            clock,
            streaming=self.streaming,
            sentence_deadline=self.stage_timeouts.get("tts") if self.streaming else None,
            first_phrase_words=self.first_phrase_words,
        )
        if live is not None:
            live.reply = reply  # an interruption records how much of it was spoken
        speaking = asyncio.create_task(
            reply.speak(lambda work: stage("tts", {"streamed": self.streaming}, work))
        )
        try:
            answer = await stage(
                "llm",
                {"query": transcript, "context": context},
                lambda st: reply.think(st, transcript, context),
            )
            audio = await speaking
        finally:
            if not speaking.done():  # the llm stage failed: stop speaking
                speaking.cancel()
            # retrieved here, so a speech failure after another failure is not "lost"
            await asyncio.gather(speaking, return_exceptions=True)

        # Only an answered turn is remembered: what the user was never told (speech failed,
        # or the turn was cut short) must not come back later as a memory.
        async def update(st: StageScope) -> None:
            added = await self.memory.add_interaction(transcript, answer.text, owner=owner)
            st.set_output({"success": True, "memories_added": len(added or [])})

        warnings: list[str] = []
        try:
            await stage(
                "memory_update",
                {"user_message": transcript, "assistant_message": answer.text},
                update,
            )
        except StageError as exc:
            # The answer exists: the user gets it. The stage's own scope has recorded the
            # failure (its span's status, the stage error count); the result says so.
            warnings.append(f"not remembered: {exc}")
        latency = measure(clock, output_tokens=answer.output_tokens, streamed=self.streaming)
        if latency is not None:
            conv.set_latency(latency.to_dict())
        return TurnResult(
            transcript=transcript,
            response=answer.text,
            audio=audio,
            conversation_id=conv.conversation_id,
            trace_id=conv.trace_id,
            session_id=session_id,
            turn=turn,
            timings={name: timings[name] for name in STAGES if name in timings},
            memories_used=context,
            latency=latency,
            warnings=warnings,
        )

    def _deadline(self, stage: str) -> float | None:
        """A stage's deadline (streamed speech: none for the stage, one per sentence)."""
        if stage == "tts" and self.streaming:
            return None
        return self.stage_timeouts.get(stage)

    def _stt_work(
        self, user_input: str | bytes | os.PathLike[str], clock: TurnClock
    ) -> Callable[[StageScope], Awaitable[str]]:
        async def work(st: StageScope) -> str:
            clock.mark("stt_start")
            if isinstance(user_input, str):
                text = user_input.strip()
                clock.mark("stt_end")
                if not text:
                    raise ValueError("the text input is empty")
                st.set_output({"transcript": text, "skipped": True})
                return text
            text = await self.stt.transcribe(
                bytes(user_input) if isinstance(user_input, bytearray) else user_input
            )
            clock.mark("stt_end")
            st.set_output({"transcript": text, "skipped": False})
            return text

        return work


def _stt_inputs(user_input: str | bytes | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(user_input, str):
        return {"text": user_input}
    if isinstance(user_input, (bytes, bytearray)):
        return {"audio_bytes": len(user_input)}
    return {"audio_path": os.fspath(user_input)}


async def _run_stage(
    conv: ConversationScope,
    name: str,
    inputs: Mapping[str, Any],
    work: Callable[[StageScope], Awaitable[T]],
    timings: dict[str, float],
    deadline: float | None = None,
) -> T:
    start = time.perf_counter()
    try:
        async with conv.stage(name, inputs) as st:
            if deadline is None:
                return await work(st)
            try:
                async with asyncio.timeout(deadline):
                    return await work(st)
            except TimeoutError as exc:
                if time.perf_counter() - start < deadline:
                    raise  # the stage's own timeout, not the deadline
                raise StageTimeoutError(
                    f"{name} did not finish within its {deadline:g} s deadline"
                ) from exc
    except StageError:
        raise
    except Exception as exc:  # CancelledError is a BaseException: it passes untouched
        raise StageError(name, exc) from exc
    finally:
        timings[name] = time.perf_counter() - start
