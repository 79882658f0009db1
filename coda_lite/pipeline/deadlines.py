"""Passed stage deadlines, told to the component each stage speaks about.

    deadlines = StageDeadlines({"llm": llm, "memory_retrieval": store, ...})
    manager = ConversationManager(..., on_deadline=deadlines.passed)
    # a hung model: the llm stage's deadline passes -> llm.stats.record_timeout(message)

A component whose stage outlived its deadline is unhealthy (whatever its own probe says) until
one of its calls succeeds again (:meth:`coda_lite.stats.CallStats.record_timeout`). This is
control, not telemetry: it works the same with tracing on or off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["STAGE_COMPONENTS", "StageDeadlines"]

log = logging.getLogger(__name__)

#: Which component a stage's deadline speaks about.
STAGE_COMPONENTS = {
    "stt": "stt",
    "memory_retrieval": "memory_store",
    "llm": "llm",
    "memory_update": "memory_store",
    "tts": "tts",
}


class StageDeadlines:
    """Maps a stage whose deadline passed to its component's call statistics."""

    def __init__(self, components_by_stage: Mapping[str, Any]) -> None:
        self._by_stage = dict(components_by_stage)

    def passed(self, stage: str, message: str) -> None:
        """``stage`` did not finish in time: its component records a timeout."""
        stats = getattr(self._by_stage.get(stage), "stats", None)
        if stats is None:
            return
        try:
            stats.record_timeout(message or f"{stage} stage deadline passed")
        except Exception:  # health bookkeeping must never fail the turn it reports on
            log.exception("could not record the %s deadline", stage)
