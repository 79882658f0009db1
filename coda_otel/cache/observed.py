"""A thread-safe cachetools TTL cache that reports hits, misses, load cost and evictions.

Size evictions (an entry pushed out by ``maxsize``) and expiries (``ttl`` ran out) are told
apart and counted by a :class:`~coda_otel.cache.debugger.CacheDebugger`, which also keeps
``coda_cache_entries`` current. Any cache in the application can be one of these::

    responses = ObservedTTLCache(256, ttl=600.0, name="llm_response", debugger=debugger)
    key = ("llama3", hashlib.sha256(query.encode()).hexdigest())
    answer = responses.get_or_compute(key, lambda: llm.generate(query))      # sync
    answer = await responses.aget_or_compute(key, lambda: llm.agenerate(query))  # async

``get_or_compute`` times the loader and records that as the cache's load cost, so every
later hit is credited with measured time saved. A loader that raises caches nothing.
Concurrent misses on one key may both compute (the later value wins); nothing is locked
while the loader runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import Cache, TTLCache

from coda_otel.cache.debugger import CacheDebugger, EvictionReason

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_MISSING = object()


class _ReportingTTLCache(TTLCache[K, V]):
    """TTLCache whose size evictions and expiries call back (cachetools >= 5 semantics)."""

    def __init__(
        self,
        maxsize: float,
        ttl: float,
        timer: Callable[[], float],
        on_evict: Callable[[str, int], None],
    ) -> None:
        super().__init__(maxsize, ttl, timer)
        self._on_evict = on_evict

    def popitem(self) -> tuple[K, V]:
        # Cache.__setitem__ calls popitem only to make room: a size eviction. (TTLCache's
        # popitem first expires stale entries, which expire() below counts separately.)
        item = super().popitem()
        self._on_evict("size", 1)
        return item

    def expire(self, time: float | None = None) -> list[tuple[K, V]]:
        expired = super().expire(time)
        if expired:
            self._on_evict("expired", len(expired))
        return expired


class ObservedTTLCache(Generic[K, V]):
    """LRU + TTL cache guarded by a lock, reporting to ``debugger`` under ``name``.

    ``timer`` is the clock for TTLs (pass a fake one in tests). ``debugger`` defaults to a
    private :class:`CacheDebugger`; read it back through :attr:`debugger`.
    """

    def __init__(
        self,
        maxsize: int,
        ttl: float,
        *,
        name: str,
        debugger: CacheDebugger | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, got {maxsize!r}")
        if not isinstance(ttl, int | float) or not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self.debugger = debugger if debugger is not None else CacheDebugger()
        self.name = self.debugger.register_cache(name, maxsize=maxsize, ttl=float(ttl))
        self._lock = threading.RLock()
        self._cache: _ReportingTTLCache[K, V] = _ReportingTTLCache(
            maxsize, float(ttl), timer, self._on_evict
        )

    # --- reporting ----------------------------------------------------------------------
    def _on_evict(self, reason: str, count: int) -> None:
        # Runs inside cachetools, under self._lock; must never raise into the cache.
        try:
            kind: EvictionReason = "size" if reason == "size" else "expired"
            self.debugger.record_eviction(self.name, kind, count)
            self.debugger.set_entries(self.name, Cache.__len__(self._cache))
        except Exception:  # pragma: no cover - instrumentation never breaks the cache
            pass

    def _sync_entries(self) -> None:
        self.debugger.set_entries(self.name, len(self._cache))  # len() expires stale entries

    # --- mapping-like surface -----------------------------------------------------------
    @property
    def maxsize(self) -> float:
        return self._cache.maxsize

    @property
    def ttl(self) -> float:
        return float(self._cache.ttl)

    @property
    def currsize(self) -> float:
        with self._lock:
            return self._cache.currsize

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._cache

    def peek(self, key: K, default: V | None = None) -> V | None:
        """The cached value without counting a hit or a miss."""
        # One item lookup (it expires a stale entry and refreshes LRU order) instead of
        # cachetools' get(), which checks membership first: half the work on a hit.
        try:
            with self._lock:
                return self._cache[key]
        except KeyError:
            return default

    def get(self, key: K, default: V | None = None) -> V | None:
        """Look up ``key``, counting a hit or a miss (no load is recorded)."""
        value = self.peek(key, _MISSING)  # type: ignore[arg-type]
        hit = value is not _MISSING
        self.debugger.record_cache_access(self.name, key, hit)
        return value if hit else default  # type: ignore[return-value]

    def put(self, key: K, value: V) -> None:
        """Store ``value`` (may evict the least recently used entry, or expire stale ones)."""
        with self._lock:
            self._cache[key] = value
            self._sync_entries()

    __setitem__ = put

    def expire(self) -> int:
        """Drop expired entries now; returns how many went (they are counted as expiries)."""
        with self._lock:
            n = len(self._cache.expire())
            self._sync_entries()
        return n

    def clear(self) -> None:
        """Forget everything (not counted as evictions)."""
        with self._lock:
            self._cache.clear()
            self._sync_entries()

    # --- read-through -------------------------------------------------------------------
    def _lookup(self, key: K) -> object:
        value = self.peek(key, _MISSING)  # type: ignore[arg-type]
        if value is not _MISSING:
            self.debugger.record_cache_access(self.name, key, True)
        return value

    def _store(self, key: K, value: V, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.debugger.record_cache_access(self.name, key, False)
        self.debugger.record_load(self.name, elapsed)
        self.put(key, value)

    def get_or_compute(self, key: K, fn: Callable[[], V]) -> V:
        """The cached value for ``key``, or ``fn()`` (timed, stored) on a miss."""
        value = self._lookup(key)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        started = time.perf_counter()
        try:
            computed = fn()
        except BaseException:
            self.debugger.record_cache_access(self.name, key, False)
            raise
        self._store(key, computed, started)
        return computed

    async def aget_or_compute(self, key: K, coro_fn: Callable[[], Awaitable[V]]) -> V:
        """Async :meth:`get_or_compute`: ``await coro_fn()`` on a miss (no lock held)."""
        value = self._lookup(key)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        started = time.perf_counter()
        try:
            computed = await coro_fn()
        except BaseException:
            self.debugger.record_cache_access(self.name, key, False)
            raise
        self._store(key, computed, started)
        return computed
