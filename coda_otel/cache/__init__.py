"""Cache debugging: hit ratios, time saved, evictions by reason and recommendations, per cache.

    from coda_otel.cache import CacheDebugger, CachedEmbedder

    caches = CacheDebugger(metrics=metrics)
    embedder = CachedEmbedder(model, debugger=caches)   # any object with encode(texts)
    vectors = embedder.encode(["hello"])
    caches.get_stats()["cache_types"]                   # hit ratio, time saved, evictions

Modules: ``debugger`` (:class:`CacheDebugger`), ``recommendations`` (the rules that turn
statistics into advice), ``embedder`` (an embedding cache), ``observed`` (a TTL cache that
reports to the debugger).
"""

from __future__ import annotations

from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.embedder import CachedEmbedder
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.cache.recommendations import RecommendationThresholds

__all__ = ["CacheDebugger", "CachedEmbedder", "ObservedTTLCache", "RecommendationThresholds"]
