"""Plain records the pipeline debugger hands to its listeners (metrics, WebSocket, logs).

A listener is anything with ``on_stage_end`` and ``on_conversation_end`` (and, if it wants
them, ``on_stage_stalled``: a stage still running past its budget); it is called on the
pipeline's task right after the span ends, so it must be cheap and must not block (queue the
work, don't do it). The debugger shields the pipeline from a listener that raises.

    class Printer:
        def on_stage_end(self, event: StageEvent) -> None:
            print(event.stage, f"{event.duration_s * 1000:.1f} ms", event.status)

        def on_conversation_end(self, event: ConversationEvent) -> None:
            print("turn", event.turn, event.status, event.trace_id)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

Status = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class StageEvent:
    """One finished pipeline stage."""

    conversation_id: str
    session_id: str | None
    turn: int
    stage: str
    status: Status
    started_at: float  # epoch seconds
    duration_s: float
    input_size: int
    output_size: int
    trace_id: str | None = None  # 32 lowercase hex digits, None when not sampled/disabled
    span_id: str | None = None  # 16 lowercase hex digits
    error_type: str | None = None
    error_message: str | None = None  # already sanitised

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, *values: Any) -> StageEvent:
        """The event of these field values, in field order, for the per-stage hot path.

        A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__``;
        this stores straight into the slots (about half the cost), for the same object::

            StageEvent.of("c1", "s1", 1, "llm", "ok", t0, 0.8, 42, 17, None, None, None, None)
        """
        event = object.__new__(cls)
        for store, value in zip(_STAGE_EVENT_SLOTS, values, strict=True):
            store(event, value)
        return event


#: Each StageEvent field's slot setter, in field order (see ``StageEvent.of``).
_STAGE_EVENT_SLOTS = tuple(getattr(StageEvent, f.name).__set__ for f in fields(StageEvent))


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """One finished turn (the root span ``conversation``); ``session_id`` groups turns."""

    conversation_id: str
    session_id: str | None
    turn: int
    status: Status
    started_at: float
    duration_s: float
    trace_id: str | None = None
    span_id: str | None = None
    stages: tuple[StageEvent, ...] = field(default_factory=tuple)
    #: The turn's measures when the pipeline reported them: voice_to_voice_us,
    #: time_to_first_audio_us, time_to_first_token_us, output_tokens_per_second, streamed,
    #: breakdown_us {part: us} (durations in integer microseconds).
    latency: Mapping[str, Any] | None = None
    #: Why the turn ended: "completed", "error", "interrupted" (a newer turn, a client that
    #: left, an ``interrupt`` command) or "cancelled" (anything else that stopped it).
    end_reason: str = "completed"
    #: For an interrupted turn: ``interrupted_by`` and how much of the answer was spoken
    #: (``spoken_sentences``, ``spoken_chars``, ``generated_chars``); else None.
    interruption: Mapping[str, Any] | None = None
    stalls: tuple[StallEvent, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StallEvent:
    """A stage still running with no progress for longer than its budget (sent while it runs)."""

    conversation_id: str
    session_id: str | None
    turn: int
    stage: str
    budget_s: float
    idle_s: float  # seconds without progress when reported
    running_s: float  # seconds since the stage started
    trace_id: str | None = None
    span_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PipelineListener(Protocol):
    """Receives finished stages and turns. Must be cheap and must not block."""

    def on_stage_end(self, event: StageEvent) -> None: ...

    def on_conversation_end(self, event: ConversationEvent) -> None: ...


class ListenerBase:
    """A :class:`PipelineListener` whose hooks do nothing: override only the ones you need.

    class SlowStages(ListenerBase):
        def on_stage_end(self, event: StageEvent) -> None:
            if event.duration_s > 1.0:
                print("slow", event.stage)
    """

    def on_stage_end(self, event: StageEvent) -> None:
        """Called once per finished stage; does nothing here."""

    def on_conversation_end(self, event: ConversationEvent) -> None:
        """Called once per finished turn; does nothing here."""

    def on_stage_stalled(self, event: StallEvent) -> None:
        """Called (optional for a listener) when a running stage outlives its budget."""
