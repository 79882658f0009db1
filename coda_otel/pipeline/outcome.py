"""How a turn ended and what got stuck along the way, as span attributes, events and records.

Used by :mod:`coda_otel.pipeline.scopes`::

    end_reason("cancelled", None)                  # "cancelled"; "ok" -> "completed"
    end_attributes("interrupted", {"interrupted_by": "new_turn", "spoken_chars": 42})
    # {"coda.turn.end_reason": "interrupted", "coda.turn.interrupted_by": "new_turn",
    #  "coda.turn.spoken_chars": 42}
    report_stall(conv, stage, entry, idle_s)       # span event, record, listeners

An interrupted turn is not a failure: its spans keep an unset status and say
``coda.turn.end_reason=interrupted``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from coda_otel.events import StallEvent

if TYPE_CHECKING:
    from coda_otel.pipeline.scopes import Conversation
    from coda_otel.pipeline.stage import Stage
    from coda_otel.pipeline.stalls import InFlight

logger = logging.getLogger(__name__)

__all__ = ["END_REASON", "STALL_EVENT", "end_attributes", "end_reason", "report_stall"]

END_REASON = "coda.turn.end_reason"
STALL_EVENT = "stage.stalled"
_BY_STATUS = {"ok": "completed", "error": "error", "cancelled": "cancelled"}
_SCALARS = (str, bool, int, float)


def end_reason(status: str, reason: str | None) -> str:
    """The reason the pipeline gave, else one read from the outcome."""
    return reason or _BY_STATUS.get(status, status)


def end_attributes(reason: str, details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``coda.turn.end_reason`` and the scalar details as ``coda.turn.<key>`` attributes."""
    attrs: dict[str, Any] = {END_REASON: reason}
    for key, value in (details or {}).items():
        if isinstance(value, _SCALARS):
            attrs[f"coda.turn.{key}"] = value
    return attrs


def report_stall(conv: Conversation, st: Stage, entry: InFlight, idle: float) -> None:
    """A running stage outlived its budget: say so on its span, its record and to listeners."""
    budget = entry.budget or 0.0
    running = time.monotonic() - entry.started
    st.span.add_event(
        STALL_EVENT,
        {
            "coda.stage.budget_seconds": budget,
            "coda.stage.idle_seconds": round(idle, 3),
            "coda.stage.running_seconds": round(running, 3),
        },
    )
    st.span.set_attribute("coda.stage.stalled", True)
    st.metadata["stalls"] = entry.stalls
    event = StallEvent(
        conversation_id=conv.conversation_id,
        session_id=conv.session_id,
        turn=conv.turn,
        stage=st.name,
        budget_s=budget,
        idle_s=idle,
        running_s=running,
        trace_id=conv.trace_id,
        span_id=conv.span_hex(st.span),
    )
    with conv.lock:
        conv.stalls.append(event)
    logger.warning(
        "stage %s of conversation %s: no progress for %.1f s (budget %g s), still running",
        st.name, conv.conversation_id, idle, budget,
    )  # fmt: skip
    conv.dbg.emit_stall(event)
