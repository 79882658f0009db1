"""The scopes behind the pipeline debugger: a conversation (root span) and its stages.

Made by :class:`coda_otel.pipeline.debugger.ConversationPipelineDebugger`, never directly::

    with dbg.conversation(session_id="s1", turn=1) as conv:       # Conversation
        async with conv.stage("stt", {"audio_bytes": 32000}) as st:  # Stage (also plain `with`)
            st.set_output({"transcript": text})

A stage is a child of the current span when that span is in the conversation's trace (a stage
inside a stage), else of the root; the stage's span is made current inside the block, so
work started there, on the loop or in ``asyncio.to_thread``, nests under it. A disabled
debugger hands out :data:`NOOP_STAGE` (see :mod:`coda_otel.pipeline.noop`); failures are put on
spans and records by :mod:`coda_otel.pipeline.errors`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Status, StatusCode

from coda_otel.events import ConversationEvent, StageEvent, StallEvent
from coda_otel.pipeline.conversation_log import StageRecord
from coda_otel.pipeline.errors import (
    STACK_LIMIT,
    error_type,
    record_failure,
    same_failure,
    status_of,
)
from coda_otel.pipeline.genai import latency_attributes
from coda_otel.pipeline.noop import NOOP_STAGE, DisabledConversation
from coda_otel.pipeline.outcome import END_REASON, end_attributes, end_reason
from coda_otel.pipeline.stage import Stage, hex_id, start_attributes, unreadable
from coda_otel.sanitize import size_of

if TYPE_CHECKING:
    from coda_otel.pipeline.debugger import ConversationPipelineDebugger

logger = logging.getLogger(__name__)

# NOOP_STAGE, DisabledConversation (noop), STACK_LIMIT (errors) and Stage are re-exported.
__all__ = [
    "NOOP_STAGE",
    "STACK_LIMIT",
    "Conversation",
    "DisabledConversation",
    "Stage",
    "hex_id",
    "unreadable",
]


class Conversation:
    """One turn: the root span ``conversation`` and its stages (one per ``with`` block)."""

    def __init__(
        self,
        dbg: ConversationPipelineDebugger,
        conversation_id: str,
        session_id: str | None,
        turn: int,
        *,
        attach: bool = True,
    ) -> None:
        self.dbg = dbg
        self.conversation_id = conversation_id
        self.session_id = session_id
        self.turn = turn
        self.records: list[StageRecord] = []
        self.events: list[StageEvent] = []
        self.error: StageRecord | None = None
        self._error_exc: BaseException | None = None
        self._attach = attach
        self._token: object | None = None
        self.lock = threading.Lock()
        self._finished = False
        self.sampled = False
        #: 32 hex digits when the trace is sampled (exported), else None: no dangling links.
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self.trace_int = 0  # kept even when unsampled: stage nesting compares it
        self.latency: dict[str, Any] | None = None
        self.end_reason: str | None = None  # set by the pipeline (e.g. "interrupted")
        self.end_details: dict[str, Any] = {}
        self.stalls: list[StallEvent] = []

    def span_hex(self, span: trace.Span) -> str | None:
        """A span's id as 16 hex digits when this conversation's trace is sampled."""
        return hex_id(span.get_span_context().span_id, 16) if self.sampled else None

    @property
    def session_key(self) -> str:
        """``gen_ai.conversation.id``: the session (the multi-turn conversation), else the
        turn's own id when the turn belongs to no session."""
        return self.session_id if self.session_id is not None else self.conversation_id

    def stage(self, name: str, inputs: Mapping[str, Any]) -> Stage:
        return Stage(self, name, inputs)

    def set_latency(self, latency: Mapping[str, Any]) -> None:
        """The turn's measures: root span attributes, the log header, listeners' event."""
        self.latency = dict(latency)
        try:
            for key, value in latency_attributes(latency).items():
                self.span.set_attribute(key, value)
        except Exception:
            logger.warning("could not record the latency of %s", self.conversation_id,
                           exc_info=True)  # fmt: skip

    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        """Why the turn ends (``"interrupted"``), with details (who interrupted, how much was
        spoken); stages cancelled from now on say it too. Not an error: status stays unset."""
        self.end_reason = reason
        self.end_details.update(details or {})

    def __enter__(self) -> Conversation:
        attrs: dict[str, Any] = {
            "coda.conversation.id": self.conversation_id,
            "coda.turn": self.turn,
            "gen_ai.conversation.id": self.session_key,
        }
        if self.session_id is not None:
            attrs["session.id"] = self.session_id
        caller = trace.get_current_span().get_span_context()
        links = [Link(caller)] if caller.is_valid else None  # e.g. the request that started it
        self.span = self.dbg.tracer.start_span(
            "conversation", context=otel_context.Context(), attributes=attrs, links=links
        )
        ctx = self.span.get_span_context()
        self.trace_int = ctx.trace_id if ctx.is_valid else 0
        self.sampled = ctx.is_valid and ctx.trace_flags.sampled
        if self.sampled:
            self.trace_id = hex_id(ctx.trace_id, 32)
            self.span_id = hex_id(ctx.span_id, 16)
        self.context = trace.set_span_in_context(self.span)
        if self._attach:
            self._token = otel_context.attach(self.context)
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.finish(exc_info[1], save=True)
        except Exception:
            logger.exception("could not record conversation %s", self.conversation_id)
        finally:
            if self._token is not None:
                try:
                    otel_context.detach(self._token)  # type: ignore[arg-type]
                except Exception:
                    logger.debug("context detach failed", exc_info=True)

    # --- spans and records ----------------------------------------------------------------
    def start_stage_span(
        self, name: str, attrs: Mapping[str, Any], start_time: int | None = None
    ) -> trace.Span:
        """A stage's span: a child of the current span when that span is in this trace (a
        stage inside a stage), else of the root."""
        current = trace.get_current_span().get_span_context()
        parent = None if current.trace_id == self.trace_int else self.context
        return self.dbg.tracer.start_span(
            name, context=parent, attributes=attrs, start_time=start_time
        )

    def start_attributes(self, name: str, inputs: Any, input_size: int) -> dict[str, Any]:
        return start_attributes(name, inputs, input_size, self.session_key, self.dbg.sanitizer)

    def finish_stage(self, st: Stage, exc: BaseException | None, duration: float) -> None:
        span, status, output = st.span, status_of(exc), st.output
        attrs: dict[str, Any] = {"coda.output.size": 0, "coda.stage.status": status}
        if output is not None:
            try:
                attrs["coda.output.size"] = size_of(output)
                sanitizer = self.dbg.sanitizer
                if sanitizer.capture_content:
                    attrs["coda.output.preview"] = sanitizer.text(str(sanitizer.value(output)))
            except Exception:  # an output that cannot be measured or printed
                logger.warning("stage %s: could not describe its output", st.name, exc_info=True)
                output, attrs["coda.output.size"] = unreadable(output), 0
                attrs.pop("coda.output.preview", None)
        for key, value in attrs.items():  # set_attribute each: cheaper than set_attributes
            span.set_attribute(key, value)
        record = StageRecord(
            name=st.name,
            status=status,
            started_at=st.started_at,
            duration_s=duration,
            inputs=st.inputs,
            output=output,
            input_size=st.input_size,
            output_size=attrs["coda.output.size"],
            trace_id=self.trace_id,
            span_id=self.span_hex(span),
            metadata=st.metadata,
        )
        if exc is not None and status == "error":
            self._record_error(span, exc, record)
        elif exc is not None:
            span.add_event("cancelled", {"exception.type": error_type(exc)})
            if self.end_reason is not None:
                span.set_attribute(END_REASON, self.end_reason)
        span.end()
        self.add(record)

    def mark_error(self, record: StageRecord) -> None:
        """Mark the turn failed by ``record`` (the first failure wins)."""
        with self.lock:
            self.error = self.error or record

    def _record_error(self, span: trace.Span, exc: BaseException, record: StageRecord) -> None:
        record_failure(span, exc, record, self.dbg.sanitizer)
        with self.lock:
            if self.error is None:
                self.error, self._error_exc = record, exc

    def add(self, record: StageRecord) -> None:
        with self.lock:
            self.records.append(record)
        if self.dbg.listeners:
            event = StageEvent(
                conversation_id=self.conversation_id,
                session_id=self.session_id,
                turn=self.turn,
                stage=record.name,
                status=record.status,
                started_at=record.started_at,
                duration_s=record.duration_s,
                input_size=record.input_size,
                output_size=record.output_size,
                trace_id=record.trace_id,
                span_id=record.span_id,
                error_type=record.error_type,
                error_message=record.error_message,
            )
            self.events.append(event)
            self.dbg.emit_stage(event)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Stage: %s | %s | %.1fms", record.name, record.status, record.duration_s * 1e3
            )

    def finish(self, exc: BaseException | None, *, save: bool) -> dict[str, Any] | None:
        """End the root span, tell listeners, queue the log (built now for reported stages)."""
        with self.lock:
            if self._finished:
                return None
            self._finished = True
        duration = time.perf_counter() - self._t0
        status = status_of(exc)
        span = self.span
        if exc is not None and status == "error" and not same_failure(exc, self._error_exc):
            record = StageRecord(
                name="conversation",
                status="error",
                started_at=time.time(),
                duration_s=0.0,
                inputs={},
                output=None,
                input_size=0,
                output_size=0,
                trace_id=self.trace_id,
                span_id=self.span_id,
            )
            self._record_error(span, exc, record)
            self.records.append(record)
        if self.error is not None:
            status = "error"
            failed = self._error_exc
            kind = error_type(failed) if failed else (self.error.error_type or "Error")
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, f"stage {self.error.name} failed"))
        span.set_attribute("coda.conversation.status", status)
        reason = end_reason(status, self.end_reason if status != "ok" else None)
        interruption = dict(self.end_details) if reason == "interrupted" else None
        for key, value in end_attributes(reason, interruption).items():
            span.set_attribute(key, value)
        span.end()
        total_ms = round(duration * 1000, 3)
        header = {
            "conversation_id": self.conversation_id, "session_id": self.session_id,
            "turn": self.turn, "status": status, "trace_id": self.trace_id,
            "span_id": self.span_id, "started_at": self.started_at,
            "ended_at": self.started_at + duration, "total_duration_ms": total_ms,
            "latency": self.latency, "end_reason": reason, "interruption": interruption,
            "stalls": [s.to_dict() for s in self.stalls],
        }  # fmt: skip
        if self.dbg.listeners:
            self.dbg.emit_conversation(
                ConversationEvent(
                    conversation_id=self.conversation_id,
                    session_id=self.session_id,
                    turn=self.turn,
                    status=status,
                    started_at=self.started_at,
                    duration_s=duration,
                    trace_id=self.trace_id,
                    span_id=self.span_id,
                    stages=tuple(self.events),
                    latency=self.latency,
                    end_reason=reason,
                    interruption=interruption,
                    stalls=tuple(self.stalls),
                )
            )
        logger.info(
            "Conversation %s completed | Stages: %s | Total duration: %.2fms",
            self.conversation_id, " -> ".join(r.name for r in self.records), total_ms,
        )  # fmt: skip
        return self.dbg.save(list(self.records), header, build_now=not self._attach, save=save)
