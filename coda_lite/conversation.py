"""One conversation turn: stt -> memory_retrieval -> llm -> memory_update -> tts.

    manager = ConversationManager(stt, memory, llm, tts)          # observer: NULL_OBSERVER
    result = await manager.process_user_input("Where do I live?", session_id="s1")
    await manager.process_user_input("Where do I live?", session_id="s2", user_id="ada")
    result.response, result.timings["llm"], result.conversation_id

Text input skips recognition (the stt stage says ``skipped: True``); ``bytes`` or a path is
audio. Every stage runs inside ``observer.conversation(...)`` / ``conv.stage(name, inputs)``
(see :mod:`coda_lite.observer`), so whoever observes sees the stage boundaries; this module
has no telemetry of its own. Memory is read and written for one owner: ``user_id``, else
``session_id``, else ``"default"`` (:func:`memory_owner`). A failing stage raises
:class:`StageError` naming the stage; the next turn is unaffected. A failed ``memory_update``
(a full disk, a locked database) does not fail the turn: the answer is returned with a
warning in ``TurnResult.warnings``, and the stage's failure is observed as any other.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cachetools import LRUCache

from coda_lite.llm import LLMResult
from coda_lite.memory.long_term import DEFAULT_OWNER
from coda_lite.observer import NULL_OBSERVER, ConversationScope, PipelineObserver, StageScope

STAGES = ("stt", "memory_retrieval", "llm", "memory_update", "tts")
T = TypeVar("T")


class StageTimeoutError(TimeoutError):
    """A stage did not finish within its deadline (``ConversationManager(stage_timeouts=)``)."""


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
    warnings: list[str] = field(default_factory=list)  # what went wrong without failing the turn


class _STT(Protocol):
    async def transcribe(self, audio: bytes | str | os.PathLike[str]) -> str: ...


class _Memory(Protocol):
    async def get_context(self, query: str, *, owner: str) -> list[dict[str, Any]]: ...

    async def add_interaction(self, user: str, assistant: str, *, owner: str) -> Any: ...


def memory_owner(user_id: str | None, session_id: str | None) -> str:
    """Whose memory a turn reads and writes: the user, else the session, else the default."""
    return user_id or session_id or DEFAULT_OWNER


class _LLM(Protocol):
    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult: ...


class _TTS(Protocol):
    async def synthesize(self, text: str) -> bytes: ...


class ConversationManager:
    def __init__(
        self,
        stt: _STT,
        memory: _Memory,
        llm: _LLM,
        tts: _TTS,
        observer: PipelineObserver = NULL_OBSERVER,
        *,
        max_sessions: int = 10_000,
        stage_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self.stt = stt
        self.memory = memory
        self.llm = llm
        self.tts = tts
        self.observer = observer
        self.stage_timeouts = dict(stage_timeouts or {})  # stage -> seconds; none: no deadline
        self._turns: LRUCache[str, int] = LRUCache(maxsize=max_sessions)
        self._turns_lock = threading.Lock()

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
        turn = self._next_turn(session_id)
        owner = memory_owner(user_id, session_id)
        timings: dict[str, float] = {}
        with self.observer.conversation(session_id=session_id, turn=turn) as conv:

            async def stage(
                name: str, inputs: Mapping[str, Any], work: Callable[[StageScope], Awaitable[T]]
            ) -> T:
                deadline = self.stage_timeouts.get(name)
                return await _run_stage(conv, name, inputs, work, timings, deadline)

            transcript = await stage("stt", _stt_inputs(user_input), self._stt_work(user_input))

            async def retrieve(st: StageScope) -> list[dict[str, Any]]:
                ctx = await self.memory.get_context(transcript, owner=owner)
                st.set_output({"memories": len(ctx), "context": ctx})
                return ctx

            context = await stage("memory_retrieval", {"query": transcript}, retrieve)

            async def generate(st: StageScope) -> LLMResult:
                result = await self.llm.generate(transcript, context)
                st.set_llm_usage(
                    model=result.model,
                    input_tokens=result.input_tokens,
                    output_tokens=result.output_tokens,
                )
                st.set_output({"response": result.text})
                return result

            answer = await stage("llm", {"query": transcript, "context": context}, generate)

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

            async def speak(st: StageScope) -> bytes:
                audio = await self.tts.synthesize(answer.text)
                st.set_output({"audio_bytes": len(audio)})
                return audio

            audio = await stage("tts", {"text": answer.text}, speak)
            return TurnResult(
                transcript=transcript,
                response=answer.text,
                audio=audio,
                conversation_id=conv.conversation_id,
                trace_id=conv.trace_id,
                session_id=session_id,
                turn=turn,
                timings=timings,
                memories_used=context,
                warnings=warnings,
            )

    def _stt_work(
        self, user_input: str | bytes | os.PathLike[str]
    ) -> Callable[[StageScope], Awaitable[str]]:
        async def work(st: StageScope) -> str:
            if isinstance(user_input, str):
                text = user_input.strip()
                if not text:
                    raise ValueError("the text input is empty")
                st.set_output({"transcript": text, "skipped": True})
                return text
            text = await self.stt.transcribe(
                bytes(user_input) if isinstance(user_input, bytearray) else user_input
            )
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
