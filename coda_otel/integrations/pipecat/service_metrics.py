"""Pipecat's ``MetricsFrame`` data into coda-otel's Prometheus families.

A Pipecat service measures itself (``PipelineParams(enable_metrics=True,
enable_usage_metrics=True)``) and pushes the results as ``MetricsFrame``; the observer hands
each item here with the stage of the service that pushed it::

    recorder = ServiceMetrics(metrics)
    recorder.record("llm", TTFBMetricsData(processor="llm#0", value=0.21))
    # coda_service_ttfb_seconds{stage="llm"}            TTFBMetricsData
    # coda_service_processing_seconds{stage}            ProcessingMetricsData
    # coda_llm_tokens_total{type="input"|"output"}      LLMUsageMetricsData
    # coda_tts_characters_total                         TTSUsageMetricsData

Stage names outside :data:`~coda_otel.metrics.STAGES` fold into ``"other"``. The stage
durations, turn outcomes and latencies come from the turns themselves
(:class:`~coda_otel.pipeline.PipelineMetrics`), not from here: nothing is counted twice.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pipecat.metrics.metrics import (
    LLMTokenUsage,
    LLMUsageMetricsData,
    ProcessingMetricsData,
    TTFBMetricsData,
    TTSUsageMetricsData,
)

from coda_otel.metrics import STAGES, CodaMetrics, bounded

logger = logging.getLogger(__name__)

__all__ = ["ServiceMetrics"]


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class ServiceMetrics:
    """Records one Pipecat metrics item at a time (cheap; never raises)."""

    def __init__(self, metrics: CodaMetrics) -> None:
        self.metrics = metrics
        self.failures = 0

    def record(self, stage: str, item: Any) -> None:
        try:
            self._record(bounded(stage, STAGES), item)
        except Exception:
            self.failures += 1
            if self.failures <= 10:
                logger.warning("could not record a Pipecat metric %r", item, exc_info=True)

    def _record(self, stage: str, item: Any) -> None:
        m = self.metrics
        if isinstance(item, TTFBMetricsData):
            value = _seconds(item.value)
            if value is not None:
                m.service_ttfb.labels(stage=stage).observe(value)
        elif isinstance(item, ProcessingMetricsData):
            value = _seconds(item.value)
            if value is not None:
                m.service_processing.labels(stage=stage).observe(value)
        elif isinstance(item, LLMUsageMetricsData):
            usage: LLMTokenUsage = item.value
            m.llm_tokens.labels(type="input").inc(max(0, int(usage.prompt_tokens)))
            m.llm_tokens.labels(type="output").inc(max(0, int(usage.completion_tokens)))
        elif isinstance(item, TTSUsageMetricsData):
            m.tts_characters.inc(max(0, int(item.value)))
