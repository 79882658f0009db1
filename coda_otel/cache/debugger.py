"""What the caches reuse versus recompute, what that saves, and how to tune them.

Time saved is *measured*: each miss's compute time feeds a moving average of that cache's
load cost, and every hit is credited with that average (or with ``computation_time_ms`` when
the caller measured the avoided work itself). Until a load has been measured a hit saves 0.
Each cache's counts live here, one lock and two additions per hit; Prometheus reads them at
scrape time (:class:`~coda_otel.metrics.CacheCounters`), and so does ``get_stats``::

    debugger = CacheDebugger(metrics=CodaMetrics(registry))
    debugger.register_cache("embedding", maxsize=1024, ttl=3600.0)
    debugger.record_cache_access("embedding", key, hit=False)
    debugger.record_load("embedding", 0.031)          # the miss took 31 ms to compute
    debugger.record_cache_access("embedding", key, hit=True)   # credited ~31 ms
    debugger.get_stats()["cache_types"]["embedding"]["time_saved_ms"]
    for rec in debugger.get_recommendations():
        print(rec["priority"], rec["message"])

Keys never become labels; at DEBUG level they are logged as a short blake2b digest. The
tuning rules and their thresholds live in :mod:`coda_otel.cache.recommendations`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any, Literal

from coda_otel.cache.recommendations import RecommendationThresholds, recommend
from coda_otel.metrics import OTHER, CacheCounts, CodaMetrics

__all__ = [
    "EWMA_ALPHA",
    "MAX_CACHES",
    "CacheDebugger",
    "EvictionReason",
    "RecommendationThresholds",
    "key_digest",
]

logger = logging.getLogger(__name__)
_debug_enabled = logger.isEnabledFor  # bound once: the hot path checks it on every access
_DEBUG = logging.DEBUG

EvictionReason = Literal["size", "expired"]
#: Weight of the newest miss in the load-cost moving average.
EWMA_ALPHA = 0.2
#: Most distinct cache names one debugger accepts; more fold into "other" (label cardinality).
MAX_CACHES = 16
_CACHE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class _CacheState:
    """One cache's counts (kept here, read by Prometheus at scrape time), its pre-bound gauge
    and histogram children, load-cost estimate and reset baseline."""

    __slots__ = (
        "baseline",
        "entries",
        "entries_gauge",
        "expiries",
        "hits",
        "load_cost_s",
        "load_hist",
        "lock",
        "maxsize",
        "misses",
        "name",
        "saved_s",
        "size_evictions",
        "ttl",
    )

    def __init__(self, name: str, metrics: CodaMetrics) -> None:
        metrics.register_cache(name)
        self.name = name
        self.lock = threading.Lock()
        self.hits = self.misses = self.saved_s = 0.0
        self.size_evictions = self.expiries = 0.0
        self.entries = 0.0
        self.entries_gauge = metrics.cache_entries.labels(cache=name)
        self.load_hist = metrics.cache_load_duration.labels(cache=name)
        self.load_cost_s = 0.0
        self.maxsize: float | None = None
        self.ttl: float | None = None
        self.baseline = CacheCounts()

    def counts(self) -> CacheCounts:
        """Counts since the debugger started."""
        with self.lock:
            return CacheCounts(
                self.hits, self.misses, self.saved_s, self.size_evictions, self.expiries
            )


def key_digest(key: object) -> str:
    """A short, stable digest of a cache key, safe to log (never the key itself)."""
    return hashlib.blake2b(repr(key).encode("utf-8", "replace"), digest_size=6).hexdigest()


class CacheDebugger:
    """Records cache hits, misses, loads and evictions; reports stats and tuning advice.

    Thread-safe. ``metrics`` defaults to a private :class:`CodaMetrics` (nothing exported).
    When ``enabled`` is False every ``record_*`` call returns at once and the readers answer
    empty.
    """

    def __init__(
        self,
        enabled: bool = True,
        log_level: int | str | None = None,
        *,
        metrics: CodaMetrics | None = None,
        thresholds: RecommendationThresholds | None = None,
    ) -> None:
        if log_level is not None:  # this tool's own logger only, never the root or coda_otel
            logger.setLevel(log_level)
        self.enabled = enabled
        self.metrics = metrics if metrics is not None else CodaMetrics(process_collector=False)
        self.thresholds = thresholds if thresholds is not None else RecommendationThresholds()
        self._caches: dict[str, _CacheState] = {}
        self._lock = threading.Lock()
        self.metrics.cache_counters.add_source(self.counts)

    # --- registration -------------------------------------------------------------------
    def register_cache(
        self, name: str, *, maxsize: float | None = None, ttl: float | None = None
    ) -> str:
        """Declare a cache (its series start at 0); returns the label actually used.

        ``name`` must look like ``embedding`` or ``llm_response`` (lowercase identifier);
        ``maxsize``/``ttl`` are quoted in recommendations.
        """
        if not isinstance(name, str) or not _CACHE_NAME.fullmatch(name):
            raise ValueError(
                f"cache name {str(name)[:40]!r} must be a lowercase identifier "
                "(letters, digits, '_'; at most 40 characters)"
            )
        state = self._state(name)
        with self._lock:
            if maxsize is not None:
                state.maxsize = maxsize
            if ttl is not None:
                state.ttl = ttl
        return state.name

    def _state(self, cache_type: str) -> _CacheState:
        state = self._caches.get(cache_type)
        if state is not None:
            return state
        with self._lock:
            state = self._caches.get(cache_type)
            if state is None:
                label = cache_type
                if not (isinstance(label, str) and _CACHE_NAME.fullmatch(label)) or (
                    len(self._caches) >= MAX_CACHES
                ):
                    label = OTHER
                state = self._caches.get(label) or _CacheState(label, self.metrics)
                self._caches[label] = state  # folded names are not remembered: bounded dict
        return state

    # --- hot path -----------------------------------------------------------------------
    def record_cache_access(
        self,
        cache_type: str,
        key: object,
        hit: bool,
        computation_time_ms: float | None = None,
    ) -> None:
        """Count one lookup. A hit is credited with ``computation_time_ms`` when given, else
        with the cache's measured load cost; a miss given ``computation_time_ms`` also records
        that as a load (see :meth:`record_load`)."""
        if not self.enabled:
            return
        state = self._caches.get(cache_type) or self._state(cache_type)
        if hit:
            if computation_time_ms is None:
                saved = state.load_cost_s
            else:
                saved = computation_time_ms / 1e3 if computation_time_ms > 0 else 0.0
            with state.lock:
                state.hits += 1
                state.saved_s += saved
        else:
            with state.lock:
                state.misses += 1
            if computation_time_ms is not None:
                self.record_load(cache_type, computation_time_ms / 1e3)
        if _debug_enabled(_DEBUG):
            logger.debug(
                "cache %s: %s key=%s", "HIT" if hit else "MISS", state.name, key_digest(key)
            )

    def record_load(self, cache_type: str, seconds: float) -> None:
        """A miss's measured compute time: feeds the load histogram and the cost average."""
        if not self.enabled or not seconds >= 0:  # also refuses NaN
            return
        state = self._caches.get(cache_type) or self._state(cache_type)
        state.load_hist.observe(seconds)
        with state.lock:
            if state.load_cost_s == 0.0:
                state.load_cost_s = seconds
            else:
                state.load_cost_s += EWMA_ALPHA * (seconds - state.load_cost_s)

    def record_eviction(
        self, cache_type: str, reason: EvictionReason = "size", count: int = 1
    ) -> None:
        """Entries dropped: ``"size"`` (pushed out by maxsize) or ``"expired"`` (TTL)."""
        if reason not in ("size", "expired"):
            raise ValueError(f"eviction reason must be 'size' or 'expired', got {reason!r}")
        if not self.enabled or count <= 0:
            return
        state = self._caches.get(cache_type) or self._state(cache_type)
        with state.lock:
            if reason == "size":
                state.size_evictions += count
            else:
                state.expiries += count

    def set_entries(self, cache_type: str, n: float) -> None:
        """The number of entries the cache holds now."""
        if not self.enabled:
            return
        state = self._caches.get(cache_type) or self._state(cache_type)
        state.entries = float(n)
        state.entries_gauge.set(n)

    # --- readers ------------------------------------------------------------------------
    def counts(self) -> Iterator[tuple[str, CacheCounts]]:
        """Each cache's counts since this debugger started (what Prometheus exports)."""
        with self._lock:
            states = {s.name: s for s in self._caches.values()}
        for name, state in states.items():
            yield name, state.counts()

    def get_stats(self) -> dict[str, Any]:
        """Counts since the last :meth:`reset_stats`, overall and per cache.

        Keys: ``total_requests``, ``hit_rate``, ``cache_types`` (by cache), ...
        """
        if not self.enabled:
            return {}
        with self._lock:
            states = {s.name: s for s in self._caches.values()}
            snaps = {
                name: (tuple(a - b for a, b in zip(s.counts(), s.baseline, strict=True)), s)
                for name, s in states.items()
            }
        per_cache: dict[str, dict[str, Any]] = {}
        for name, (counts, s) in sorted(snaps.items()):
            hits, misses, saved_s, size_ev, expired = counts
            total = hits + misses
            per_cache[name] = {
                "hits": int(hits),
                "misses": int(misses),
                "total": int(total),
                "hit_rate": hits / total if total else 0.0,
                "time_saved_ms": saved_s * 1e3,
                "evictions": {"size": int(size_ev), "expired": int(expired)},
                "entries": int(s.entries),
                "avg_load_ms": s.load_cost_s * 1e3,
                "maxsize": s.maxsize,
                "ttl": s.ttl,
            }
        hits = sum(c["hits"] for c in per_cache.values())
        misses = sum(c["misses"] for c in per_cache.values())
        return {
            "hits": hits,
            "misses": misses,
            "total": hits + misses,
            "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
            "time_saved_ms": sum(c["time_saved_ms"] for c in per_cache.values()),
            "evictions": {
                r: sum(c["evictions"][r] for c in per_cache.values()) for r in ("size", "expired")
            },
            "entries": sum(c["entries"] for c in per_cache.values()),
            "cache_types": per_cache,
        }

    def get_recommendations(self) -> list[dict[str, Any]]:
        """Tuning advice; each item has type, message, priority and the figures behind it
        (the rules: :mod:`coda_otel.cache.recommendations`)."""
        if not self.enabled:
            return []
        return recommend(self.get_stats(), self.thresholds)

    def reset_stats(self) -> None:
        """Start counting afresh (Prometheus counters stay monotonic; entries and the
        measured load cost are current state and are kept)."""
        with self._lock:
            for state in set(self._caches.values()):
                state.baseline = state.counts()
