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
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol


class StageScope(Protocol):
    def set_output(self, output: Mapping[str, Any]) -> None: ...

    def set_llm_usage(self, *, model: str, input_tokens: int, output_tokens: int) -> None: ...


class ConversationScope(Protocol):
    @property
    def conversation_id(self) -> str: ...

    @property
    def trace_id(self) -> str | None: ...

    def stage(
        self, name: str, inputs: Mapping[str, Any]
    ) -> AbstractAsyncContextManager[StageScope]: ...


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

    def set_llm_usage(self, *, model: str, input_tokens: int, output_tokens: int) -> None:
        pass


_NULL_STAGE = _NullStage()


class _NullConversation:
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self.trace_id: str | None = None

    @contextlib.asynccontextmanager
    async def stage(self, name: str, inputs: Mapping[str, Any]) -> AsyncIterator[StageScope]:
        yield _NULL_STAGE


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
