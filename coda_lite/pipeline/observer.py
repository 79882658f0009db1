"""How the pipeline lets itself be observed, without knowing by whom.

The conversation manager opens one conversation scope per turn and one stage scope per stage;
an observer (coda-otel's ``ConversationPipelineDebugger`` in the composition root) turns them
into spans, metrics and logs. The default :data:`NULL_OBSERVER` does nothing, so the stage
modules and the manager carry no telemetry code::

    with observer.conversation(session_id="s1", turn=3) as conv:
        async with conv.stage("stt", {"audio_bytes": 32000}) as st:
            text = await stt.transcribe(audio)
            st.set_output({"transcript": text})
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol


class StageScope(Protocol):
    def set_output(self, output: Mapping[str, Any]) -> None: ...

    def set_llm_usage(
        self,
        *,
        model: str,
        input_tokens: int,
        output_tokens: int,
        provider: str | None = None,
        streamed: bool | None = None,
        time_to_first_chunk_s: float | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        response: str | None = None,
        response_model: str | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """The model call: usage, provider, streaming, time to its first chunk, the messages
        and response (content: the observer decides whether to keep it), the model that
        answered when the backend says, and why the answer ended."""

    def add_event(
        self, name: str, attributes: Mapping[str, Any], content: str | None = None
    ) -> None:
        """Something that happened inside the stage now (a sentence was synthesized)."""

    def mark_progress(self) -> None:
        """The stage is alive (a token arrived): a stage silent past its budget is stalled."""


class ConversationScope(Protocol):
    @property
    def conversation_id(self) -> str: ...

    @property
    def trace_id(self) -> str | None: ...

    def stage(
        self, name: str, inputs: Mapping[str, Any]
    ) -> AbstractAsyncContextManager[StageScope]: ...

    def set_latency(self, latency: Mapping[str, Any]) -> None:
        """The turn's measures (``coda_lite.pipeline.latency.TurnLatency.to_dict()``)."""

    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        """Why the turn is ending (``"interrupted"``) and details (who, how much was spoken)."""


class PipelineObserver(Protocol):
    def conversation(
        self,
        *,
        session_id: str | None = None,
        turn: int = 1,
        conversation_id: str | None = None,
    ) -> AbstractContextManager[ConversationScope]: ...


class _NullStage:
    def set_output(self, output: Mapping[str, Any]) -> None:
        pass

    def set_llm_usage(self, **usage: Any) -> None:
        pass

    def add_event(
        self, name: str, attributes: Mapping[str, Any], content: str | None = None
    ) -> None:
        pass

    def mark_progress(self) -> None:
        pass


_NULL_STAGE = _NullStage()


class _NullConversation:
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self.trace_id: str | None = None

    @contextlib.asynccontextmanager
    async def stage(self, name: str, inputs: Mapping[str, Any]) -> AsyncIterator[StageScope]:
        yield _NULL_STAGE

    def set_latency(self, latency: Mapping[str, Any]) -> None:
        pass

    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        pass


class NullObserver:
    """Observes nothing; conversation ids are still generated so results carry one."""

    @contextlib.contextmanager
    def conversation(
        self,
        *,
        session_id: str | None = None,
        turn: int = 1,
        conversation_id: str | None = None,
    ) -> Iterator[ConversationScope]:
        import uuid

        yield _NullConversation(conversation_id or uuid.uuid4().hex)


NULL_OBSERVER: PipelineObserver = NullObserver()
