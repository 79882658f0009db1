"""Turns finished pipeline stages and turns into Prometheus metrics.

A :class:`~coda_otel.events.PipelineListener`: hand it to the pipeline debugger next to the
other listeners. Stage durations carry an exemplar with the stage's ``trace_id`` (visible in
the OpenMetrics exposition), so a slow bucket on a dashboard links to its trace::

    metrics = CodaMetrics(registry)
    listeners = [PipelineMetrics(metrics), ...]
    # per stage:        coda_pipeline_stage_duration_seconds{stage}  (+ exemplar trace_id)
    #                   coda_pipeline_stage_errors_total{stage, error_type}   on failure
    # per turn:       coda_conversations_total{status}, coda_conversation_duration_seconds
    # per spoken turn:  coda_llm_time_to_first_token_seconds, coda_time_to_first_audio_seconds,
    #                   coda_voice_to_voice_latency_seconds, coda_llm_output_tokens_per_second
    # interrupted turn: coda_turns_interrupted_total{source}
    # per stall:        coda_stage_stalls_total{stage}   (while the stage still runs)
    metrics.stage_inflight_oldest.set_function(debugger.stalls.oldest_age)  # at scrape time

Stage names outside :data:`~coda_otel.metrics.STAGES` fold into ``"other"`` and error types
are capped by ``metrics.error_type``, so no label grows without bound. Hooks never raise.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from coda_otel.events import ConversationEvent, StageEvent, StallEvent
from coda_otel.metrics import (
    CONVERSATION_STATUSES,
    INTERRUPT_SOURCES,
    OTHER,
    STAGES,
    CodaMetrics,
    bounded,
)
from coda_otel.pipeline.genai import seconds

logger = logging.getLogger(__name__)

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _exemplar(trace_id: str | None) -> dict[str, str] | None:
    """``{"trace_id": ...}`` for a valid trace id, else None (no exemplar).

    The pipeline debugger sets ``trace_id`` only for sampled traces, so an unsampled turn,
    whose trace is never exported, gets no exemplar.
    """
    if trace_id and _TRACE_ID.fullmatch(trace_id) and trace_id != "0" * 32:
        return {"trace_id": trace_id}
    return None


class PipelineMetrics:
    """Records stage and turn metrics from pipeline events (cheap, never raises)."""

    def __init__(self, metrics: CodaMetrics) -> None:
        self.metrics = metrics
        self._stage_hist = {s: metrics.stage_duration.labels(stage=s) for s in (*STAGES, OTHER)}
        self._conversations = {
            s: metrics.conversations.labels(status=s) for s in (*CONVERSATION_STATUSES, "other")
        }
        self._failures = 0
        self._last: tuple[str | None, dict[str, str] | None] = (None, None)

    @property
    def failures(self) -> int:
        """How many events could not be recorded (logged, never raised)."""
        return self._failures

    def on_stage_end(self, event: StageEvent) -> None:
        try:
            hist = self._stage_hist.get(event.stage)  # one lookup: a known stage, else "other"
            if hist is None:
                hist = self._stage_hist[OTHER]
            duration = _duration(event.duration_s)
            last = self._last  # (trace id, exemplar): one tuple, so threads never mix them
            if last[0] != event.trace_id:  # a turn's stages share one: validate it once
                last = self._last = (event.trace_id, _exemplar(event.trace_id))
            hist.observe(duration, exemplar=last[1])
            if event.status == "error":
                stage = bounded(event.stage, STAGES)
                error_type = self.metrics.error_type(event.error_type or "unknown")
                self.metrics.stage_errors.labels(stage=stage, error_type=error_type).inc()
        except Exception:
            self._failed("stage")

    def on_conversation_end(self, event: ConversationEvent) -> None:
        try:
            status = bounded(event.status, CONVERSATION_STATUSES)
            self._conversations[status].inc()
            exemplar = _exemplar(event.trace_id)
            self.metrics.conversation_duration.observe(
                _duration(event.duration_s), exemplar=exemplar
            )
            if event.latency:
                self._observe_latency(event.latency, exemplar)
            if event.end_reason == "interrupted":
                source = str((event.interruption or {}).get("interrupted_by", OTHER))
                self.metrics.turns_interrupted.labels(
                    source=bounded(source, INTERRUPT_SOURCES)
                ).inc()
        except Exception:
            self._failed("conversation")

    def on_stage_stalled(self, event: StallEvent) -> None:
        try:
            self.metrics.stage_stalls.labels(stage=bounded(event.stage, STAGES)).inc()
        except Exception:
            self._failed("stall")

    def _observe_latency(self, latency: Mapping[str, Any], exemplar: dict[str, str] | None) -> None:
        m = self.metrics
        for hist, key in (
            (m.time_to_first_token, "time_to_first_token_us"),
            (m.time_to_first_audio, "time_to_first_audio_us"),
            (m.voice_to_voice, "voice_to_voice_us"),
            (m.output_token_rate, "output_tokens_per_second"),
        ):
            value = seconds(latency, key)
            if value is not None and math.isfinite(value) and value >= 0:
                hist.observe(value, exemplar=exemplar)

    def _failed(self, what: str) -> None:
        self._failures += 1
        if self._failures <= 10 or self._failures % 1000 == 0:
            logger.warning("could not record %s metrics", what, exc_info=True)


def _duration(value: float) -> float:
    """A usable duration: negative or non-finite values (clock trouble) become 0."""
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else 0.0
