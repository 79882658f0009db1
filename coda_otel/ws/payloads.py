"""The data of the ``pipeline_stage`` and ``conversation_end`` events, from listener events.

stage_data(event)          # timings, sizes and ids of one stage, never content
conversation_data(event)   # the turn, its end reason and a brief of each of its stages
stall_data(event)          # ``stage_stalled``: a stage still running past its budget
"""

from __future__ import annotations

from typing import Any

from coda_otel.events import ConversationEvent, StageEvent, StallEvent
from coda_otel.ws.protocol import epoch_iso

__all__ = ["conversation_data", "stage_data", "stall_data"]


def _turn(event: StageEvent | ConversationEvent | StallEvent) -> dict[str, Any]:
    """The fields every turn event starts with."""
    return {
        "conversation_id": event.conversation_id,
        "session_id": event.session_id,
        "turn": max(0, event.turn),
    }


def stage_data(event: StageEvent) -> dict[str, Any]:
    """The ``pipeline_stage`` payload: timings, sizes and ids, never content."""
    return {
        **_turn(event),
        "stage": event.stage,
        "status": event.status,
        "started_at": epoch_iso(event.started_at),
        "duration_ms": round(max(0.0, event.duration_s) * 1000.0, 3),
        "input_size": max(0, event.input_size),
        "output_size": max(0, event.output_size),
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "error_type": event.error_type,
    }


def conversation_data(event: ConversationEvent) -> dict[str, Any]:
    """The ``conversation_end`` payload."""
    return {
        **_turn(event),
        "status": event.status,
        "started_at": epoch_iso(event.started_at),
        "duration_ms": round(max(0.0, event.duration_s) * 1000.0, 3),
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "stages": [
            {
                "stage": s.stage,
                "status": s.status,
                "duration_ms": round(max(0.0, s.duration_s) * 1000.0, 3),
            }
            for s in event.stages
        ],
        "latency": dict(event.latency) if event.latency else None,
        "end_reason": event.end_reason,
        "interruption": dict(event.interruption) if event.interruption else None,
        "stalls": [{"stage": s.stage, "idle_ms": _ms(s.idle_s)} for s in event.stalls],
    }


def stall_data(event: StallEvent) -> dict[str, Any]:
    """The ``stage_stalled`` payload: which stage of which turn, how long without progress."""
    return {
        **_turn(event),
        "stage": event.stage,
        "budget_ms": _ms(event.budget_s),
        "idle_ms": _ms(event.idle_s),
        "running_ms": _ms(event.running_s),
        "trace_id": event.trace_id,
        "span_id": event.span_id,
    }


def _ms(seconds: float) -> float:
    return round(max(0.0, seconds) * 1000.0, 3)
