"""One stage scope: a span opened by ``async with conv.stage(...)`` (or plain ``with``).

Made by :meth:`coda_otel.pipeline.scopes.Conversation.stage`, never directly::

    async with conv.stage("llm", {"query": text}) as st:
        st.set_output({"response": answer})
        st.set_llm_usage(model="smollm2", input_tokens=42, output_tokens=17)

The stage measures itself and hands the result to its conversation, which owns the records,
the events and the span bookkeeping. It is in flight for the debugger's stall watcher while it
runs; ``st.mark_progress()`` (and every ``add_event``) says it is alive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from coda_otel.pipeline.genai import llm_attributes
from coda_otel.pipeline.outcome import report_stall
from coda_otel.pipeline.stalls import InFlight
from coda_otel.sanitize import size_of

if TYPE_CHECKING:
    from coda_otel.pipeline.scopes import Conversation
    from coda_otel.sanitize import Sanitizer

logger = logging.getLogger(__name__)

__all__ = ["Stage", "hex_id", "measured", "start_attributes", "unreadable"]


def hex_id(value: int, width: int) -> str | None:
    return format(value, f"0{width}x") if value else None


def unreadable(value: object) -> dict[str, str]:
    """What a record keeps of content that cannot be measured or printed."""
    return {"unreadable": type(value).__name__}


def start_attributes(
    name: str, inputs: Any, input_size: int, session_key: str, sanitizer: Sanitizer
) -> dict[str, Any]:
    """A stage span's first attributes (the input preview only with content capture on)."""
    attrs: dict[str, Any] = {
        "coda.stage": name,
        "coda.input.size": input_size,
        "gen_ai.conversation.id": session_key,
    }
    if name == "llm":
        attrs["gen_ai.operation.name"] = "chat"
    if sanitizer.capture_content:
        attrs["coda.input.preview"] = sanitizer.text(str(sanitizer.value(inputs)))
    return attrs


def measured(value: Any) -> tuple[Any, int]:
    """``value`` and its size; content that cannot be measured becomes a marker of size 0."""
    try:
        return value, size_of(value)
    except Exception:  # content whose __len__/__str__ raises never fails the caller
        return unreadable(value), 0


class Stage:
    """One stage span, opened by ``async with`` (or ``with``, in a worker thread)."""

    __slots__ = (
        "_conv",
        "_flight",
        "_t0",
        "_token",
        "input_size",
        "inputs",
        "metadata",
        "name",
        "output",
        "span",
        "started_at",
    )

    def __init__(self, conv: Conversation, name: str, inputs: Mapping[str, Any]) -> None:
        self._conv = conv
        self.name = name
        self.inputs = inputs
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
        self._flight.progress()  # something happened: the stage is not stuck

    def _stalled(self, entry: InFlight, idle: float) -> None:
        report_stall(self._conv, self, entry, idle)

    def __enter__(self) -> Stage:
        conv = self._conv
        try:
            self.input_size = size_of(self.inputs)
            attrs = conv.start_attributes(self.name, self.inputs, self.input_size)
        except Exception:  # an input whose __len__/__str__ raises must not fail the stage
            logger.warning("stage %s: could not describe its input", self.name, exc_info=True)
            self.inputs, self.input_size = unreadable(self.inputs), 0
            attrs = {"coda.stage": self.name}
        self.span = conv.start_stage_span(self.name, attrs)
        self._flight = conv.dbg.stalls.begin(self.name, self._stalled)
        self._token = otel_context.attach(trace.set_span_in_context(self.span))
        self.started_at = time.time()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        duration = time.perf_counter() - self._t0
        exc: BaseException | None = exc_info[1] if len(exc_info) > 1 else None
        self._conv.dbg.stalls.end(self._flight)
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
