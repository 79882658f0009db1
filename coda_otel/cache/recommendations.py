"""Cache tuning advice: the rules and thresholds behind ``CacheDebugger.get_recommendations``.

The rules read the stats dictionary of :meth:`~coda_otel.cache.debugger.CacheDebugger.get_stats`
and nothing else, so they can be tried on any figures::

    from coda_otel.cache.recommendations import RecommendationThresholds, recommend

    strict = RecommendationThresholds(low_overall_hit_rate=0.8, min_overall_accesses=10)
    for rec in recommend(debugger.get_stats(), strict):
        print(rec["priority"], rec["rule"], rec["message"])

Rules: ``low_overall_hit_rate`` (all caches together), then per cache ``low_cache_hit_rate``,
``valuable_cache`` (saves much time, hit rate could be better), ``raise_maxsize`` (evicts live
entries for space while missing often) and ``raise_ttl`` (many misses are expiries).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class RecommendationThresholds:
    """When :meth:`CacheDebugger.get_recommendations` speaks up (the defaults below)."""

    low_overall_hit_rate: float = 0.5
    critical_overall_hit_rate: float = 0.3
    min_overall_accesses: int = 100
    low_cache_hit_rate: float = 0.4
    critical_cache_hit_rate: float = 0.2
    min_cache_accesses: int = 50
    valuable_time_saved_ms: float = 5000.0
    improvable_hit_rate: float = 0.7
    min_size_evictions: int = 20
    size_eviction_miss_rate: float = 0.5
    min_expiries: int = 20
    expiry_share_of_misses: float = 0.25

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value < 0:
                raise ValueError(f"threshold {f.name} must be >= 0, got {value!r}")
            if ("rate" in f.name or "share" in f.name) and value > 1:
                raise ValueError(f"threshold {f.name} is a fraction in [0, 1], got {value!r}")


def recommend(stats: dict[str, Any], t: RecommendationThresholds) -> list[dict[str, Any]]:
    """Tuning advice for ``stats``; each item has type, message, priority and its figures."""
    recs: list[dict[str, Any]] = []
    if stats["total"] > t.min_overall_accesses and stats["hit_rate"] < t.low_overall_hit_rate:
        recs.append(
            {
                "type": "general",
                "rule": "low_overall_hit_rate",
                "message": "Overall cache hit rate is low. Consider increasing cache size or TTL.",
                "priority": "high" if stats["hit_rate"] < t.critical_overall_hit_rate else "medium",
                "hit_rate": stats["hit_rate"],
                "total": stats["total"],
            }
        )
    for name, c in stats["cache_types"].items():
        recs.extend(_cache_recommendations(name, c, t))
    return recs


def _cache_recommendations(
    name: str, c: dict[str, Any], t: RecommendationThresholds
) -> list[dict[str, Any]]:
    recs: list[dict[str, Any]] = []
    base = {"type": "cache_type", "cache_type": name, "hit_rate": c["hit_rate"]}
    miss_rate = 1.0 - c["hit_rate"] if c["total"] else 0.0
    if c["total"] > t.min_cache_accesses and c["hit_rate"] < t.low_cache_hit_rate:
        recs.append(
            base
            | {
                "rule": "low_cache_hit_rate",
                "message": f"Hit rate for {name} cache is low. Consider tuning this cache.",
                "priority": "high" if c["hit_rate"] < t.critical_cache_hit_rate else "medium",
                "total": c["total"],
            }
        )
    if (
        c["time_saved_ms"] > t.valuable_time_saved_ms
        and t.low_cache_hit_rate <= c["hit_rate"] < t.improvable_hit_rate
    ):
        recs.append(
            base
            | {
                "rule": "valuable_cache",
                "message": f"{name} cache is saving significant time but hit rate could "
                "be improved.",
                "priority": "medium",
                "time_saved_ms": c["time_saved_ms"],
            }
        )
    size_ev = c["evictions"]["size"]
    if size_ev >= t.min_size_evictions and miss_rate >= t.size_eviction_miss_rate:
        now = f" (now {c['maxsize']:g})" if c["maxsize"] is not None else ""
        recs.append(
            base
            | {
                "rule": "raise_maxsize",
                "message": f"{name} cache evicts live entries for space and misses "
                f"{miss_rate:.0%} of lookups: raise maxsize{now}.",
                "priority": "high",
                "size_evictions": size_ev,
                "miss_rate": miss_rate,
                "maxsize": c["maxsize"],
            }
        )
    expired = c["evictions"]["expired"]
    share = expired / c["misses"] if c["misses"] else 0.0
    if expired >= t.min_expiries and share >= t.expiry_share_of_misses:
        now = f" (now {c['ttl']:g} s)" if c["ttl"] is not None else ""
        recs.append(
            base
            | {
                "rule": "raise_ttl",
                "message": f"{name} cache lets many entries expire ({expired} expiries, "
                f"{share:.0%} of its misses): raise the TTL{now}.",
                "priority": "medium",
                "expired_evictions": expired,
                "expiry_share_of_misses": share,
                "ttl": c["ttl"],
            }
        )
    return recs
