"""The scopes a disabled pipeline debugger hands out: same surface, no span, no allocation.

Made by :class:`coda_otel.pipeline.debugger.ConversationPipelineDebugger` when it is disabled::

    with dbg.conversation(session_id="s1", turn=1) as conv:   # DisabledConversation
        async with conv.stage("stt", {}) as st:               # NOOP_STAGE, shared by every stage
            st.set_output({"transcript": text})               # does nothing
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NoopStage:
    """The shared scope of a disabled debugger: no span, no allocation."""

    __slots__ = ()

    def set_output(self, output: Mapping[str, Any]) -> None:
        pass

    def set_llm_usage(self, **usage: Any) -> None:
        pass

    def mark_progress(self) -> None:
        pass

    def add_event(
        self, name: str, attributes: Mapping[str, Any], content: str | None = None
    ) -> None:
        pass

    async def __aenter__(self) -> NoopStage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __enter__(self) -> NoopStage:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NOOP_STAGE = NoopStage()


class DisabledConversation:
    """What a disabled debugger returns: an id and no-op stages."""

    __slots__ = ("conversation_id",)
    trace_id: str | None = None

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id

    def stage(self, name: str, inputs: Mapping[str, Any]) -> NoopStage:
        return NOOP_STAGE

    def set_latency(self, latency: Mapping[str, Any]) -> None:
        pass

    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        pass

    def __enter__(self) -> DisabledConversation:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
