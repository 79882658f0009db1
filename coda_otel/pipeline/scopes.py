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

from coda_otel.events import ConversationEvent, StageEvent
from coda_otel.pipeline.conversation_log import StageRecord
from coda_otel.pipeline.errors import (
    STACK_LIMIT,
    error_type,
    record_failure,
    same_failure,
    status_of,
)
from coda_otel.pipeline.genai import latency_attributes, llm_attributes
from coda_otel.pipeline.noop import NOOP_STAGE, DisabledConversation
from coda_otel.sanitize import size_of

if TYPE_CHECKING:
    from coda_otel.pipeline.debugger import ConversationPipelineDebugger

logger = logging.getLogger("coda.pipeline.debugger")

# NOOP_STAGE, DisabledConversation (noop_scopes) and STACK_LIMIT (stage_errors) are re-exported.
__all__ = [
    "NOOP_STAGE", "STACK_LIMIT", "Conversation", "DisabledConversation", "Stage", "hex_id",
    "unreadable",
]  # fmt: skip


def hex_id(value: int, width: int) -> str | None:
    return format(value, f"0{width}x") if value else None


def unreadable(value: object) -> dict[str, str]:
    """What a record keeps of content that cannot be measured or printed."""
    return {"unreadable": type(value).__name__}


class Stage:
    """One stage span, opened by ``async with`` (or ``with``, in a worker thread)."""

    __slots__ = (
        "_conv", "_t0", "_token", "input_size", "inputs", "metadata", "name", "output", "span",
        "started_at",
    )  # fmt: skip

    def __init__(self, conv: Conversation, name: str, inputs: Mapping[str, Any]) -> None:
        self._conv = conv
        self.name = name
        self.inputs = inputs
        self.output: Mapping[str, Any] | None = None
        self.metadata: dict[str, Any] = {}

    def set_output(self, output: Mapping[str, Any]) -> None:
        self.output = output

    def set_llm_usage(
        self, *, model: str, input_tokens: int, output_tokens: int, **extra: Any
    ) -> None:
        """Usage, provider, streaming, time to first chunk (``llm_attributes`` keywords)."""
        self.metadata.update(model=model, input_tokens=input_tokens, output_tokens=output_tokens)
        ttfc = extra.get("time_to_first_chunk_s")
        if ttfc is not None:
            self.metadata["time_to_first_chunk_s"] = ttfc
        attrs = llm_attributes(
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            sanitizer=self._conv.dbg.sanitizer,
            **extra,
        )
        for key, value in attrs.items():
            self.span.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any], content: str | None = None
    ) -> None:
        """A span event now; ``content`` (text) is kept, redacted, only with capture on."""
        attrs = dict(attributes)
        sanitizer = self._conv.dbg.sanitizer
        if content is not None and sanitizer.capture_content:
            attrs["coda.content"] = sanitizer.text(content)
        self.span.add_event(name, attrs)

    def __enter__(self) -> Stage:
        conv = self._conv
        try:
            self.input_size = size_of(self.inputs)
            attrs = conv.start_attributes(self.name, self.inputs, self.input_size)
        except Exception:  # an input whose __len__/__str__ raises must not fail the stage
            logger.warning("stage %s: could not describe its input", self.name, exc_info=True)
            self.inputs, self.input_size = unreadable(self.inputs), 0
            attrs = {"coda.stage": self.name}
        # Nest under the current span when it is in this trace (a stage inside a stage).
        current = trace.get_current_span().get_span_context()
        parent = None if current.trace_id == conv.trace_int else conv.context
        self.span = conv.dbg.tracer.start_span(self.name, context=parent, attributes=attrs)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        duration = time.perf_counter() - self._t0
        exc: BaseException | None = exc_info[1] if len(exc_info) > 1 else None
        try:
            self._conv.finish_stage(self, exc, duration)
        except Exception:
            logger.exception("could not record stage %s", self.name)
        finally:
            try:
                otel_context.detach(self._token)
            except Exception:
                logger.debug("context detach failed for stage %s", self.name, exc_info=True)

    async def __aenter__(self) -> Stage:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.__exit__(*exc_info)


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
    def start_attributes(self, name: str, inputs: Any, input_size: int) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "coda.stage": name,
            "coda.input.size": input_size,
            "gen_ai.conversation.id": self.session_key,
        }
        if name == "llm":
            attrs["gen_ai.operation.name"] = "chat"
        sanitizer = self.dbg.sanitizer
        if sanitizer.capture_content:
            attrs["coda.input.preview"] = sanitizer.text(str(sanitizer.value(inputs)))
        return attrs

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
            st.name, status, st.started_at, duration, st.inputs, output, st.input_size,
            attrs["coda.output.size"], self.trace_id, self.span_hex(span), st.metadata,
        )  # fmt: skip
        if exc is not None and status == "error":
            self._record_error(span, exc, record)
        elif exc is not None:
            span.add_event("cancelled", {"exception.type": error_type(exc)})
        span.end()
        self.add(record)

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
                self.conversation_id, self.session_id, self.turn, record.name,
                record.status, record.started_at, record.duration_s, record.input_size,
                record.output_size, record.trace_id, record.span_id, record.error_type,
                record.error_message,
            )  # fmt: skip
            self.events.append(event)
            self.dbg.emit_stage(event)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Stage: %s | %s | %.1fms", record.name, record.status, record.duration_s * 1e3
            )

    def finish(self, exc: BaseException | None, *, save: bool) -> dict[str, Any] | None:
        """End the root span, tell listeners, queue the log (built now for the spec API)."""
        with self.lock:
            if self._finished:
                return None
            self._finished = True
        duration = time.perf_counter() - self._t0
        status = status_of(exc)
        span = self.span
        if exc is not None and status == "error" and not same_failure(exc, self._error_exc):
            record = StageRecord("conversation", "error", time.time(), 0.0, {}, None, 0, 0,
                                 self.trace_id, self.span_id)  # fmt: skip
            self._record_error(span, exc, record)
            self.records.append(record)
        if self.error is not None:
            status = "error"
            failed = self._error_exc
            kind = error_type(failed) if failed else (self.error.error_type or "Error")
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, f"stage {self.error.name} failed"))
        span.set_attribute("coda.conversation.status", status)
        span.end()
        total_ms = round(duration * 1000, 3)
        header = {
            "conversation_id": self.conversation_id, "session_id": self.session_id,
            "turn": self.turn, "status": status, "trace_id": self.trace_id,
            "span_id": self.span_id, "started_at": self.started_at,
            "ended_at": self.started_at + duration, "total_duration_ms": total_ms,
            "latency": self.latency,
        }  # fmt: skip
        if self.dbg.listeners:
            self.dbg.emit_conversation(
                ConversationEvent(
                    self.conversation_id,
                    self.session_id,
                    self.turn,
                    status,
                    self.started_at,
                    duration,
                    self.trace_id,
                    self.span_id,
                    tuple(self.events),
                    self.latency,
                )
            )
        logger.info(
            "Conversation %s completed | Stages: %s | Total duration: %.2fms",
            self.conversation_id, " -> ".join(r.name for r in self.records), total_ms,
        )  # fmt: skip
        return self.dbg.save(list(self.records), header, build_now=not self._attach, save=save)
