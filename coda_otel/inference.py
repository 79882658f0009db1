"""A model call as the OpenTelemetry GenAI conventions describe it: one inference span, and the
GenAI client metrics (duration, token usage, time to first chunk).

    inference = InferenceObserver(tracer_provider=provider, metrics=metrics, sanitizer=sanitizer)
    call = inference.start("chat", provider="openai", request_model="SmolLM2-135M-Instruct",
                           server_address="127.0.0.1", server_port=8000,
                           temperature=0.7, max_tokens=96, stream=True)
    with call.active():            # current span: a request made here carries its traceparent
        chunk = await stream.__anext__()
    call.first_chunk()             # time to first chunk, once
    call.finish(finish_reasons=("stop",), input_tokens=80, output_tokens=12,
                response_model="smollm2:135m", usage_estimated=False)
    # or: call.fail(exc)  (status error, error.type)   call.interrupted()  (not an error)

The span is named ``{gen_ai.operation.name} {gen_ai.request.model}`` (``chat SmolLM2-135M-
Instruct``), is ``CLIENT`` when the model is a server (``server.address`` / ``server.port``) and
``INTERNAL`` in process, and carries the operation, provider and request model from its start
(they are sampling-relevant), so a call that fails still says what was called. Token counts
that were estimated rather than reported by the model say so (``coda.gen_ai.usage.estimated``).
Messages go on the span only when the sanitizer captures content, redacted like all content.

Metrics follow the OpenTelemetry-to-Prometheus translation (``gen_ai_client_operation_duration_
seconds``, ``gen_ai_client_token_usage``, ``gen_ai_client_operation_time_to_first_chunk_seconds``)
with bounded labels, and carry the inference span as their exemplar. Every method catches its
own errors: observing never fails the call it observes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline.genai import messages_json
from coda_otel.sanitize import Sanitizer

__all__ = ["INTERRUPTED", "USAGE_ESTIMATED", "InferenceCall", "InferenceObserver"]

logger = logging.getLogger(__name__)

#: The finish reason of a call cut short by its caller (an interrupted turn).
INTERRUPTED = "interrupted"
#: True when the token counts are an estimate (no usage from the model).
USAGE_ESTIMATED = "coda.gen_ai.usage.estimated"


class InferenceObserver:
    """Starts inference spans and records the GenAI client metrics (see the module docstring)."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        metrics: CodaMetrics | None = None,
        sanitizer: Sanitizer | None = None,
        follow_parent: bool = False,
    ) -> None:
        """``follow_parent``: trace a call only inside a traced operation (its stage), so a
        pipeline whose tracing is off gets no stray root spans; metrics are recorded always."""
        from coda_otel import __version__

        self.tracer = trace.get_tracer("coda_otel.inference", __version__, tracer_provider)
        self.metrics = metrics
        self.sanitizer = sanitizer if sanitizer is not None else Sanitizer.from_env()
        self.follow_parent = follow_parent

    def start(
        self,
        operation: str,
        *,
        provider: str,
        request_model: str,
        server_address: str | None = None,
        server_port: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stream: bool | None = None,
        input_messages: Sequence[Mapping[str, str]] | None = None,
    ) -> InferenceCall:
        """Start one call's span now, a child of the current span (the stage that calls)."""
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": request_model,
        }
        if server_address:
            attrs["server.address"] = server_address
            if server_port is not None:
                attrs["server.port"] = int(server_port)
        if temperature is not None:
            attrs["gen_ai.request.temperature"] = float(temperature)
        if max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = int(max_tokens)
        if stream is not None:
            attrs["gen_ai.request.stream"] = bool(stream)
        if input_messages and self.sanitizer.capture_content:
            attrs["gen_ai.input.messages"] = messages_json(input_messages, self.sanitizer)
        kind = SpanKind.CLIENT if server_address else SpanKind.INTERNAL
        untraced = self.follow_parent and not trace.get_current_span().get_span_context().is_valid
        span = (
            trace.INVALID_SPAN
            if untraced
            else self.tracer.start_span(f"{operation} {request_model}", kind=kind, attributes=attrs)
        )
        labels = {
            "gen_ai_operation_name": operation,
            "gen_ai_provider_name": provider,
            "gen_ai_request_model": request_model,
        }
        return InferenceCall(span, labels, self.metrics, self.sanitizer)


class InferenceCall:
    """One model call in flight: made by :meth:`InferenceObserver.start`, never directly."""

    def __init__(
        self,
        span: trace.Span,
        labels: Mapping[str, str],
        metrics: CodaMetrics | None,
        sanitizer: Sanitizer,
    ) -> None:
        self.span = span
        self._labels = dict(labels)
        self._metrics = metrics
        self._sanitizer = sanitizer
        self._t0 = time.perf_counter()
        self.time_to_first_chunk_s: float | None = None
        self.ended = False

    @contextmanager
    def active(self) -> Iterator[trace.Span]:
        """Make the span current inside the block (for the request that carries its context)."""
        with trace.use_span(self.span, end_on_exit=False):
            yield self.span

    def first_chunk(self) -> None:
        """The first streamed chunk arrived (later calls change nothing)."""
        if self.time_to_first_chunk_s is not None:
            return
        self.time_to_first_chunk_s = time.perf_counter() - self._t0
        try:
            self.span.set_attribute(
                "gen_ai.response.time_to_first_chunk", self.time_to_first_chunk_s
            )
            if self._metrics is not None:
                self._metrics.genai_time_to_first_chunk.labels(**self._labels).observe(
                    self.time_to_first_chunk_s, self._exemplar()
                )
        except Exception:
            logger.warning("could not record the first chunk of a model call", exc_info=True)

    def finish(
        self,
        *,
        finish_reasons: Sequence[str] = ("stop",),
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_model: str | None = None,
        usage_estimated: bool = False,
        output_text: str | None = None,
        input_messages: Sequence[Mapping[str, str]] | None = None,
    ) -> None:
        """The call answered: response attributes, usage, metrics; the span ends.
        ``input_messages`` (the prompt as sent, when only the answer tells it) and
        ``output_text`` are kept only with content capture on."""
        if self.ended:
            return
        try:
            attrs: dict[str, Any] = {"gen_ai.response.finish_reasons": list(finish_reasons)}
            if response_model:
                attrs["gen_ai.response.model"] = response_model
            if input_tokens is not None:
                attrs["gen_ai.usage.input_tokens"] = int(input_tokens)
            if output_tokens is not None:
                attrs["gen_ai.usage.output_tokens"] = int(output_tokens)
            if input_tokens is not None or output_tokens is not None:
                attrs[USAGE_ESTIMATED] = bool(usage_estimated)
            if input_messages and self._sanitizer.capture_content:
                attrs["gen_ai.input.messages"] = messages_json(input_messages, self._sanitizer)
            if output_text is not None and self._sanitizer.capture_content:
                reason = finish_reasons[0] if finish_reasons else "stop"
                said = [{"role": "assistant", "content": output_text}]
                attrs["gen_ai.output.messages"] = messages_json(said, self._sanitizer, reason)
            for key, value in attrs.items():
                self.span.set_attribute(key, value)
            self._record("", input_tokens, output_tokens)
        except Exception:
            logger.warning("could not record a model call's response", exc_info=True)
        self._end()

    def fail(self, exc: BaseException) -> None:
        """The call failed: status error, ``error.type``, an exception event; the span ends."""
        if self.ended:
            return
        kind = type(exc).__qualname__
        try:
            self.span.set_attribute("error.type", kind)
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, f"{kind}: {str(exc)[:200]}"))
            error_label = self._metrics.error_type(kind) if self._metrics is not None else kind
            self._record(error_label, None, None)
        except Exception:
            logger.warning("could not record a failed model call", exc_info=True)
        self._end()

    def interrupted(self) -> None:
        """The caller stopped the call (an interrupted turn): not an error, and it says so."""
        if self.ended:
            return
        try:
            self.span.set_attribute("gen_ai.response.finish_reasons", [INTERRUPTED])
            self._record("", None, None)
        except Exception:
            logger.warning("could not record an interrupted model call", exc_info=True)
        self._end()

    # --- internals ---------------------------------------------------------------------------
    def _exemplar(self) -> dict[str, str] | None:
        ctx = self.span.get_span_context()
        if not (ctx.is_valid and ctx.trace_flags.sampled):
            return None
        return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}

    def _record(self, error_type: str, input_tokens: int | None, output_tokens: int | None) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        exemplar = self._exemplar()
        duration = time.perf_counter() - self._t0
        metrics.genai_operation_duration.labels(**self._labels, error_type=error_type).observe(
            duration, exemplar
        )
        usage = metrics.genai_token_usage
        for token_type, count in (("input", input_tokens), ("output", output_tokens)):
            if count is not None:
                labels = {**self._labels, "gen_ai_token_type": token_type}
                usage.labels(**labels).observe(count, exemplar)

    def _end(self) -> None:
        self.ended = True
        try:
            self.span.end()
        except Exception:
            logger.warning("could not end a model call's span", exc_info=True)
