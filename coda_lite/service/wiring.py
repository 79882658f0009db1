"""Small adapters of the composition root (with :mod:`coda_lite.service.app`): where
coda-otel's tools meet Coda Lite's stages.

    llm = CachedLLM(llm, ObservedTTLCache(256, 600.0, name="llm_response", debugger=caches))
    watch_memory_size(metrics, pipeline)              # memory gauges read at scrape time
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from coda_lite.pipeline.build import Pipeline
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.metrics import CodaMetrics

__all__ = ["CachedLLM", "watch_memory_size"]


class CachedLLM:
    """Answers a repeated (model, query, context) from an observed TTL cache."""

    def __init__(self, llm: Any, cache: ObservedTTLCache[str, Any]) -> None:
        self.llm = llm
        self.cache = cache
        self.model = getattr(llm, "model", "unknown")

    def key(self, query: str, context: Sequence[Mapping[str, Any]]) -> str:
        payload = json.dumps([self.model, query, [c.get("content") for c in context]])
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> Any:
        return await self.cache.aget_or_compute(
            self.key(query, context), lambda: self.llm.generate(query, context)
        )

    async def stream(self, query: str, context: Sequence[Mapping[str, Any]]) -> AsyncIterator[Any]:
        """A cached answer at once; else the model's stream, kept when it completes."""
        key = self.key(query, context)
        cached = self.cache.get(key)
        if cached is not None:
            yield cached.text
            yield cached
            return
        started = time.perf_counter()
        async for item in self.llm.stream(query, context):
            if not isinstance(item, str):
                self.cache.debugger.record_load(self.cache.name, time.perf_counter() - started)
                self.cache.put(key, item)
            yield item

    async def aclose(self) -> None:
        closer = getattr(self.llm, "aclose", None)
        if closer is not None:
            await closer()


def watch_memory_size(metrics: CodaMetrics, pipeline: Pipeline) -> None:
    """Read memory item counts at scrape time, from counters kept in memory.

    The snapshot emitter sets these gauges too, but only every N operations; with a function
    attached, the scrape-time value is the one exported. No lock and no SQL: a scrape never
    waits behind a turn (or behind another process holding the database).
    """

    def reader(read: Callable[[], int]) -> Callable[[], float]:
        def value() -> float:
            try:
                return float(read())
            except Exception:  # a store mid-restart must not break the scrape
                return math.nan

        return value

    memory, long_term = pipeline.memory, pipeline.long_term
    items = metrics.memory_items
    items.labels(tier="short_term").set_function(reader(lambda: memory.short_term_turns))
    items.labels(tier="long_term").set_function(reader(lambda: long_term.approx_count))
