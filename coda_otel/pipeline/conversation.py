"""One turn of a pipeline: the root span ``conversation``, one child span per stage, and how
the turn ended, handed to listeners and to the turn's log.

The debugger builds one :class:`TurnRecorder` (what every turn records into) and a
:class:`Conversation` per turn; a pipeline only sees ``conversation`` and ``stage``::

    recorder = TurnRecorder(tracer, sanitizer, StallWatcher({"llm": 5.0}), TurnLogs(writer, s),
                            listeners=[metrics_listener])
    with Conversation(recorder, "c1", session_id="s1", turn=3) as conv:  # root span
        async with conv.stage("llm", {"prompt": prompt}) as st:          # child span "llm"
            st.set_output({"response": reply})
            st.set_llm_usage(model="smollm2", input_tokens=42, output_tokens=17)
            st.mark_progress()                                           # alive (stall budget)
        conv.set_latency({"voice_to_voice_us": 812345})
        conv.set_end_reason("interrupted", {"interrupted_by": "new_turn"})
    conv.trace_id, conv.conversation_id

    conv.report("llm", inputs, output, {"duration_ms": 812})  # a stage reported after it ran

A "conversation" here is one turn (one exchange); a session (``session_id``, the span's
``gen_ai.conversation.id``) is many turns. Each object writes only its own span: a stage its
span (output, failure, cancellation, stalls), the conversation the root span (latency, end
reason, failure). ``recorder.tracing = False`` swaps in OpenTelemetry's no-op tracer: no span
is made (``trace_id`` is None), while listener events, the turn log and stall reports go on.

A stage is a child of the current span when that span is in the turn's trace (a stage inside a
stage), else of the root; its span is current inside the block, so work started there (on the
loop or in ``asyncio.to_thread``) nests under it. ``with conv.stage(...)`` works in a worker
thread too. An interrupted turn is not a failure: its spans keep an unset status and say
``coda.turn.end_reason=interrupted``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from coda_otel.events import ConversationEvent, PipelineListener, StageEvent, StallEvent
from coda_otel.pipeline.conversation_log import StageRecord, TurnLogs
from coda_otel.pipeline.errors import error_type, record_failure, same_failure, status_of
from coda_otel.pipeline.genai import latency_attributes, llm_attributes
from coda_otel.pipeline.stalls import InFlight, StallWatcher
from coda_otel.sanitize import Sanitizer, size_of

logger = logging.getLogger(__name__)

__all__ = [
    "END_REASON",
    "STALL_EVENT",
    "Conversation",
    "Stage",
    "TurnRecorder",
    "end_attributes",
    "end_reason",
]

END_REASON = "coda.turn.end_reason"
#: On a stage's ``cancelled`` event: what cancelled it (``CancelledError``...).
CANCELLED_BY = "coda.cancelled_by"
STALL_EVENT = "stage.stalled"
_BY_STATUS = {"ok": "completed", "error": "error", "cancelled": "cancelled"}
_SCALARS = (str, bool, int, float)
_NO_TRACER = trace.NoOpTracer()


def end_reason(status: str, reason: str | None) -> str:
    """The reason the pipeline gave, else one read from the outcome (``"ok"``: completed)."""
    return reason or _BY_STATUS.get(status, status)


def end_attributes(reason: str, details: Mapping[str, Any] | None) -> dict[str, Any]:
    """``coda.turn.end_reason`` and the scalar details as ``coda.turn.<key>`` attributes.

    >>> end_attributes("interrupted", {"interrupted_by": "new_turn", "spoken_chars": 42})
    {'coda.turn.end_reason': 'interrupted', 'coda.turn.interrupted_by': 'new_turn', \
'coda.turn.spoken_chars': 42}
    """
    attrs: dict[str, Any] = {END_REASON: reason}
    for key, value in (details or {}).items():
        if isinstance(value, _SCALARS):
            attrs[f"coda.turn.{key}"] = value
    return attrs


def _hex(value: int, width: int) -> str | None:
    return format(value, f"0{width}x") if value else None


def _unreadable(value: object) -> dict[str, str]:
    """What a record keeps of content that cannot be measured or printed."""
    return {"unreadable": type(value).__name__}


def _measured(value: Any) -> tuple[Any, int]:
    """``value`` and its size; content that cannot be measured becomes a marker of size 0."""
    try:
        return value, size_of(value)
    except Exception:  # content whose __len__/__str__ raises never fails the caller
        return _unreadable(value), 0


def _preview(sanitizer: Sanitizer, value: Any) -> str:
    return sanitizer.text(str(sanitizer.value(value)))


class TurnRecorder:
    """What every turn records into: spans (``tracer``, switched by ``tracing``), redaction
    (``sanitizer``), running stages (``stalls``), the turn log (``logs``) and the listeners."""

    def __init__(
        self,
        tracer: trace.Tracer,
        sanitizer: Sanitizer,
        stalls: StallWatcher,
        logs: TurnLogs,
        *,
        listeners: Iterable[PipelineListener] = (),
        tracing: bool = True,
    ) -> None:
        self._tracer = tracer
        self.sanitizer = sanitizer
        self.stalls = stalls
        self.logs = logs
        self.listeners = tuple(listeners)
        self.tracer: trace.Tracer = tracer if tracing else _NO_TRACER

    @property
    def listeners(self) -> tuple[PipelineListener, ...]:
        return self._listeners

    @listeners.setter
    def listeners(self, listeners: tuple[PipelineListener, ...]) -> None:
        # Each listener's on_stage_end looked up once here, not once per stage (copy-on-write:
        # a turn running meanwhile sees the old pair or the new one, never half of each).
        hooks = [(item, getattr(item, "on_stage_end", None)) for item in listeners]
        self._stage_hooks = tuple((item, hook) for item, hook in hooks if hook is not None)
        self._listeners = listeners

    @property
    def tracing(self) -> bool:
        """Whether turns make spans (only spans: events, logs and stalls go on regardless)."""
        return self.tracer is self._tracer

    @tracing.setter
    def tracing(self, value: bool) -> None:
        self.tracer = self._tracer if value else _NO_TRACER

    def add_listener(self, listener: PipelineListener) -> None:
        """Add a listener (copy-on-write, safe while turns run)."""
        self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: PipelineListener) -> None:
        self.listeners = tuple(item for item in self.listeners if item is not listener)

    def stage_ended(self, event: StageEvent) -> None:
        for listener, hook in self._stage_hooks:
            try:
                hook(event)
            except Exception:
                logger.exception("pipeline listener %r failed in on_stage_end", listener)

    def turn_ended(self, event: ConversationEvent) -> None:
        self._tell("on_conversation_end", event)

    def stage_stalled(self, event: StallEvent) -> None:
        self._tell("on_stage_stalled", event)  # optional for a listener

    def _tell(self, hook: str, event: StageEvent | ConversationEvent | StallEvent) -> None:
        """Call ``hook`` on every listener that has it; a listener's failure is only logged."""
        for listener in self.listeners:
            method = getattr(listener, hook, None)
            if method is None:
                continue
            try:
                method(event)
            except Exception:
                logger.exception("pipeline listener %r failed in %s", listener, hook)


class Stage:
    """One stage span, opened by ``async with`` (or ``with``, in a worker thread)."""

    __slots__ = (
        "_conv",
        "_flight",
        "_span",
        "_t0",
        "_token",
        "input_size",
        "inputs",
        "metadata",
        "name",
        "output",
        "started_at",
    )

    def __init__(self, conv: Conversation, name: str, inputs: Mapping[str, Any]) -> None:
        self._conv = conv
        self.name = name
        self.inputs: Any = inputs
        self.output: Mapping[str, Any] | None = None
        self.metadata: dict[str, Any] = {}

    def set_output(self, output: Mapping[str, Any]) -> None:
        self.output = output

    def mark_progress(self) -> None:
        """The stage is alive (a token, a chunk): its stall budget starts again now."""
        self._flight.progress()

    def set_llm_usage(
        self, *, model: str, input_tokens: int, output_tokens: int, **extra: Any
    ) -> None:
        """Usage, provider, streaming, time to first chunk, messages (``llm_attributes``)."""
        self.metadata.update(model=model, input_tokens=input_tokens, output_tokens=output_tokens)
        ttfc = extra.get("time_to_first_chunk_s")
        if ttfc is not None:
            self.metadata["time_to_first_chunk_s"] = ttfc
        if self._span.is_recording():
            attrs = llm_attributes(
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                sanitizer=self._conv.recorder.sanitizer,
                **extra,
            )
            for key, value in attrs.items():
                self._span.set_attribute(key, value)

    def add_event(
        self, name: str, attributes: Mapping[str, Any], content: str | None = None
    ) -> None:
        """A span event now; ``content`` (text) is kept, redacted, only with capture on."""
        if self._span.is_recording():
            attrs = dict(attributes)
            sanitizer = self._conv.recorder.sanitizer
            if content is not None and sanitizer.capture_content:
                attrs["coda.content"] = sanitizer.text(content)
            self._span.add_event(name, attrs)
        self._flight.progress()  # something happened: the stage is not stuck

    # --- scope ----------------------------------------------------------------------------------
    def __enter__(self) -> Stage:
        conv, name = self._conv, self.name
        tracer = conv.tracer
        try:
            self.input_size = size = size_of(self.inputs)
            attrs = conv.stage_attributes(name, self.inputs, size) if conv.recording else None
        except Exception:  # an input whose __len__/__str__ raises must not fail the stage
            logger.warning("stage %s: could not describe its input", name, exc_info=True)
            self.inputs, self.input_size = _unreadable(self.inputs), 0
            attrs = {"coda.stage": name}
        span = self._span = tracer.start_span(name, conv.stage_parent(), attributes=attrs)
        self._flight = conv.recorder.stalls.begin(name, self._stalled)
        self._token = otel_context.attach(trace.set_span_in_context(span)) if conv.traced else None
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        duration = time.perf_counter() - self._t0
        exc: BaseException | None = exc_info[1] if len(exc_info) > 1 else None
        self._conv.recorder.stalls.end(self._flight)
        try:
            self._finish(exc, duration)
        except Exception:
            logger.exception("could not record stage %s", self.name)
        finally:
            if self._token is not None:
                try:
                    otel_context.detach(self._token)
                except Exception:
                    logger.debug("context detach failed for stage %s", self.name, exc_info=True)

    async def __aenter__(self) -> Stage:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def _finish(self, exc: BaseException | None, duration: float) -> None:
        """Describe the outcome on the span, end it, hand the record to the conversation."""
        conv, span, output = self._conv, self._span, self.output
        recording = span.is_recording()
        status = status_of(exc)
        out_size = 0
        if output is not None:
            try:
                out_size = size_of(output)
                sanitizer = conv.recorder.sanitizer
                if recording and sanitizer.capture_content:
                    span.set_attribute("coda.output.preview", _preview(sanitizer, output))
            except Exception:  # an output that cannot be measured or printed
                logger.warning("stage %s: could not describe its output", self.name, exc_info=True)
                output, out_size = _unreadable(output), 0
        if recording:  # set_attribute each: cheaper than set_attributes
            span.set_attribute("coda.output.size", out_size)
            span.set_attribute("coda.stage.status", status)
        record = StageRecord(  # positional, in field order: cheaper than by keyword
            self.name, status, self.started_at, duration, self.inputs, output,
            self.input_size, out_size, conv.trace_id, conv.span_hex(span), self.metadata,
        )  # fmt: skip
        if exc is not None and status == "error":
            record_failure(span, exc, record, conv.recorder.sanitizer)
            conv.stage_failed(record, exc)
        elif exc is not None:
            # not an exception event (those are named "exception"): what cancelled the stage
            span.add_event("cancelled", {CANCELLED_BY: error_type(exc)})
            if conv.end_reason is not None:
                span.set_attribute(END_REASON, conv.end_reason)
        span.end()
        conv.add(record)

    def _stalled(self, entry: InFlight, idle: float, running: float) -> None:
        """Past its budget without progress: say so on this span, record and to listeners."""
        conv, span = self._conv, self._span
        budget = entry.budget or 0.0
        span.add_event(
            STALL_EVENT,
            {
                "coda.stage.budget_seconds": budget,
                "coda.stage.idle_seconds": round(idle, 3),
                "coda.stage.running_seconds": round(running, 3),
            },
        )
        span.set_attribute("coda.stage.stalled", True)
        self.metadata["stalls"] = entry.stalls
        logger.warning(
            "stage %s of conversation %s: no progress for %.1f s (budget %g s), still running",
            self.name, conv.conversation_id, idle, budget,
        )  # fmt: skip
        conv.stage_stalled(
            StallEvent(
                conversation_id=conv.conversation_id,
                session_id=conv.session_id,
                turn=conv.turn,
                stage=self.name,
                budget_s=budget,
                idle_s=idle,
                running_s=running,
                trace_id=conv.trace_id,
                span_id=conv.span_hex(span),
            )
        )


class Conversation:
    """One turn: the root span ``conversation`` and its stages (one per ``with`` block)."""

    def __init__(
        self,
        recorder: TurnRecorder,
        conversation_id: str,
        session_id: str | None = None,
        turn: int = 1,
        *,
        attach: bool = True,
    ) -> None:
        self.recorder = recorder
        self.conversation_id = conversation_id
        self.session_id = session_id
        self.turn = turn
        #: ``gen_ai.conversation.id``: the session, else the turn's own id (no session).
        self.session_key = session_id if session_id is not None else conversation_id
        self.tracer = recorder.tracer  # one tracer for the whole turn, even if switched mid-turn
        self.records: list[StageRecord] = []
        self.events: list[StageEvent] = []
        self.stalls: list[StallEvent] = []
        self.error: StageRecord | None = None
        self.latency: dict[str, Any] | None = None
        self.end_reason: str | None = None  # set by the pipeline (e.g. "interrupted")
        self.end_details: dict[str, Any] = {}
        #: 32 hex digits when the trace is sampled (exported), else None: no dangling links.
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self.sampled = False
        self.traced = False  # a real span (sampled or not): its context is propagated
        self.recording = False  # attributes on the root span are kept: worth building
        self._trace_int = 0  # kept even when unsampled: stage nesting compares it
        self._error_exc: BaseException | None = None
        self._attach = attach
        self._token: object | None = None
        self._lock = threading.Lock()
        self._finished = False
        self._span: trace.Span = trace.INVALID_SPAN
        self._context = otel_context.Context()
        self.started_at = time.time()
        self._t0 = time.perf_counter()

    # --- what the pipeline calls ----------------------------------------------------------
    def stage(self, name: str, inputs: Mapping[str, Any]) -> Stage:
        return Stage(self, name, inputs)

    def set_latency(self, latency: Mapping[str, Any]) -> None:
        """The turn's measures: root span attributes, the log header, listeners' event."""
        self.latency = dict(latency)
        try:
            for key, value in latency_attributes(latency).items():
                self._span.set_attribute(key, value)
        except Exception:
            logger.warning("could not record the latency of %s", self.conversation_id,
                           exc_info=True)  # fmt: skip

    def set_end_reason(self, reason: str, details: Mapping[str, Any] | None = None) -> None:
        """Why the turn ends (``"interrupted"``), with details (who interrupted, how much was
        spoken); stages cancelled from now on say it too. Not an error: status stays unset."""
        self.end_reason = reason
        self.end_details.update(details or {})

    def report(
        self, name: str, inputs: Any, output: Any, metadata: Mapping[str, Any] | None = None
    ) -> StageRecord:
        """A stage that already ran, ``metadata["duration_ms"]`` long: a span back-dated by
        that much. A stage named ``error`` gets no span: it marks the turn failed and puts an
        ``exception`` event on the root span. Content that cannot be measured never raises."""
        meta = dict(metadata or {})
        end_ns = time.time_ns()
        try:
            duration = max(0.0, float(meta.get("duration_ms") or 0.0) / 1000)
        except (TypeError, ValueError):
            duration = 0.0
        start_ns = end_ns - int(duration * 1e9)
        inputs, in_size = _measured(inputs)
        output, out_size = _measured(output)
        record = StageRecord(
            name=name, status="ok", started_at=start_ns / 1e9, duration_s=duration,
            inputs=inputs, output=output, input_size=in_size, output_size=out_size,
            trace_id=self.trace_id, span_id=self.span_id, metadata=meta,
        )  # fmt: skip
        if name == "error":
            source = inputs.get("error") if isinstance(inputs, Mapping) else inputs
            record.status, record.error_type = "error", str(meta.get("error_type") or "Error")
            record.error_message = self.recorder.sanitizer.text(str(source))
            self._span.add_event(
                "exception",
                {"exception.type": record.error_type, "exception.message": record.error_message},
            )
            with self._lock:
                self.error = self.error or record
        else:
            attrs = self.stage_attributes(name, inputs, in_size) if self.recording else {}
            attrs.update({"coda.output.size": out_size, "coda.stage.status": "ok"})
            if name == "llm" and "model" in meta:
                attrs["gen_ai.request.model"] = str(meta["model"])
            span = self.tracer.start_span(
                name, context=self._context, attributes=attrs, start_time=start_ns
            )
            record.span_id = self.span_hex(span)
            span.end(end_time=end_ns)
        self.add(record)
        return record

    # --- what its stages call -------------------------------------------------------------
    def span_hex(self, span: trace.Span) -> str | None:
        """A span's id as 16 hex digits when this turn's trace is sampled, else None."""
        return _hex(span.get_span_context().span_id, 16) if self.sampled else None

    def stage_parent(self) -> otel_context.Context:
        """A new stage's parent: the current context when its span is in this trace (a stage
        inside a stage), else the root's."""
        if not self.traced:
            return self._context
        current = otel_context.get_current()  # handed on: the SDK need not look it up again
        in_trace = trace.get_current_span(current).get_span_context().trace_id == self._trace_int
        return current if in_trace else self._context

    def stage_attributes(self, name: str, inputs: Any, input_size: int) -> dict[str, Any]:
        """A stage span's first attributes (the input preview only with content capture on)."""
        attrs: dict[str, Any] = {
            "coda.stage": name,
            "coda.input.size": input_size,
            "gen_ai.conversation.id": self.session_key,
        }
        if name == "llm":
            attrs["gen_ai.operation.name"] = "chat"
        sanitizer = self.recorder.sanitizer
        if sanitizer.capture_content:
            attrs["coda.input.preview"] = _preview(sanitizer, inputs)
        return attrs

    def stage_failed(self, record: StageRecord, exc: BaseException) -> None:
        """Mark the turn failed by ``record`` (the first failure wins)."""
        with self._lock:
            if self.error is None:
                self.error, self._error_exc = record, exc

    def stage_stalled(self, event: StallEvent) -> None:
        """A stage of this turn is past its budget (the turn's log and listeners hear it)."""
        with self._lock:
            self.stalls.append(event)
        self.recorder.stage_stalled(event)

    def add(self, record: StageRecord) -> None:
        """A finished stage: into the turn's records, and to listeners as a StageEvent."""
        self.records.append(record)  # list.append is atomic: stages in threads may end at once
        if self.recorder.listeners:
            event = StageEvent.of(
                self.conversation_id, self.session_id, self.turn, record.name, record.status,
                record.started_at, record.duration_s, record.input_size, record.output_size,
                record.trace_id, record.span_id, record.error_type, record.error_message,
            )  # fmt: skip
            self.events.append(event)
            self.recorder.stage_ended(event)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "Stage: %s | %s | %.1fms", record.name, record.status, record.duration_s * 1e3
            )

    # --- the root span ------------------------------------------------------------------------
    def __enter__(self) -> Conversation:
        attrs: dict[str, Any] = {
            "coda.conversation.id": self.conversation_id,
            "coda.turn": self.turn,
            "gen_ai.conversation.id": self.session_key,
        }
        if self.session_id is not None:
            attrs["session.id"] = self.session_id
        # A child of whatever started the turn (the request's SERVER span, a caller's trace
        # context handed over the WebSocket), so a caller sees the turn inside its own trace;
        # a turn nobody traced starts its own trace.
        span = self._span = self.tracer.start_span("conversation", attributes=attrs)
        self.recording = span.is_recording()
        ctx = span.get_span_context()
        self.traced = ctx.is_valid
        self._trace_int = ctx.trace_id if ctx.is_valid else 0
        self.sampled = ctx.is_valid and ctx.trace_flags.sampled
        if self.sampled:
            self.trace_id = _hex(ctx.trace_id, 32)
            self.span_id = _hex(ctx.span_id, 16)
        self._context = trace.set_span_in_context(span)
        if self._attach and self.traced:
            self._token = otel_context.attach(self._context)
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self.finish(exc_info[1] if len(exc_info) > 1 else None)
        except Exception:
            logger.exception("could not record conversation %s", self.conversation_id)
        finally:
            if self._token is not None:
                try:
                    otel_context.detach(self._token)  # type: ignore[arg-type]
                except Exception:
                    logger.debug("context detach failed", exc_info=True)

    def finish(self, exc: BaseException | None, *, save: bool = True) -> dict[str, Any] | None:
        """End the root span, tell listeners, queue the log (built now, and returned, for a
        turn of reported stages)."""
        with self._lock:
            if self._finished:
                return None
            self._finished = True
        duration = time.perf_counter() - self._t0
        status = status_of(exc)
        span = self._span
        if exc is not None and status == "error" and not same_failure(exc, self._error_exc):
            record = StageRecord(
                name="conversation", status="error", started_at=time.time(), duration_s=0.0,
                inputs={}, output=None, input_size=0, output_size=0,
                trace_id=self.trace_id, span_id=self.span_id,
            )  # fmt: skip
            record_failure(span, exc, record, self.recorder.sanitizer)
            self.stage_failed(record, exc)
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
        with self._lock:
            stalls = tuple(self.stalls)
        header = {
            "conversation_id": self.conversation_id, "session_id": self.session_id,
            "turn": self.turn, "status": status, "trace_id": self.trace_id,
            "span_id": self.span_id, "started_at": self.started_at,
            "ended_at": self.started_at + duration, "total_duration_ms": total_ms,
            "latency": self.latency, "end_reason": reason, "interruption": interruption,
            "stalls": [s.to_dict() for s in stalls],
        }  # fmt: skip
        if self.recorder.listeners:
            self.recorder.turn_ended(
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
                    stalls=stalls,
                )
            )
        # how the turn ended, in the line operators read: a failed turn never reads as done
        failure = f" ({self.error.name}: {self.error.error_type})" if self.error else ""
        log = logger.warning if status == "error" else logger.info
        log(
            "Turn %s ended %s%s | Stages: %s | Total duration: %.2fms",
            self.conversation_id, reason, failure,
            " -> ".join(f"{r.name}" + ("" if r.status == "ok" else f" [{r.status}]")
                        for r in self.records), total_ms,
        )  # fmt: skip
        return self.recorder.logs.save(
            header, list(self.records), build_now=not self._attach, save=save
        )
