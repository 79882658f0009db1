"""Stages reported after they ran: the debugger's ``log_stage`` API.

    dbg.start_conversation()
    dbg.log_stage("llm", {"query": q}, {"response": a}, {"duration_ms": 812, "model": "smollm2"})
    dbg.log_stage("error", {"error": "tts failed"}, None, {"error_type": "TTSError"})
    dbg.end_conversation()

A reported stage gets a span back-dated by its ``duration_ms``; a stage named ``error`` gets no
span of its own: it marks the turn failed and puts an ``exception`` event on the root span.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from coda_otel.pipeline.conversation_log import StageRecord
from coda_otel.pipeline.scopes import Conversation
from coda_otel.pipeline.stage import measured

__all__ = ["report_stage"]


def _duration_s(metadata: Mapping[str, Any]) -> float:
    try:
        return max(0.0, float(metadata.get("duration_ms") or 0.0) / 1000)
    except (TypeError, ValueError):
        return 0.0


def report_stage(
    conv: Conversation, name: str, inputs: Any, output: Any, metadata: dict[str, Any]
) -> StageRecord:
    """Record a finished stage on ``conv``; content that cannot be measured never raises."""
    end_ns = time.time_ns()
    duration = _duration_s(metadata)
    start_ns = end_ns - int(duration * 1e9)
    inputs, in_size = measured(inputs)
    output, out_size = measured(output)
    record = StageRecord(
        name=name,
        status="ok",
        started_at=start_ns / 1e9,
        duration_s=duration,
        inputs=inputs,
        output=output,
        input_size=in_size,
        output_size=out_size,
        trace_id=conv.trace_id,
        span_id=conv.span_id,
        metadata=metadata,
    )
    if name == "error":
        source = inputs.get("error") if isinstance(inputs, Mapping) else inputs
        record.status, record.error_type = "error", str(metadata.get("error_type") or "Error")
        record.error_message = conv.dbg.sanitizer.text(str(source))
        conv.span.add_event(
            "exception",
            {"exception.type": record.error_type, "exception.message": record.error_message},
        )
        conv.mark_error(record)
    else:
        attrs = conv.start_attributes(name, inputs, in_size)
        attrs.update({"coda.output.size": out_size, "coda.stage.status": "ok"})
        if name == "llm" and "model" in metadata:
            attrs["gen_ai.request.model"] = str(metadata["model"])
        span = conv.start_stage_span(name, attrs, start_time=start_ns)
        record.span_id = conv.span_hex(span)
        span.end(end_time=end_ns)
    conv.add(record)
    return record
