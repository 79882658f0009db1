"""ObservedTTLCache: size evictions vs expiries (fake clock), read-through, thread safety."""

from __future__ import annotations

import asyncio
import threading

import pytest

from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.metrics import CodaMetrics
from tests.support import FakeClock


def sample(m: CodaMetrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, {"cache": "memory", **labels})
    return 0.0 if v is None else v


Setup = tuple[ObservedTTLCache[str, int], CodaMetrics, FakeClock]


@pytest.fixture
def setup() -> Setup:
    m = CodaMetrics(process_collector=False)
    clock = FakeClock()
    cache: ObservedTTLCache[str, int] = ObservedTTLCache(
        3, 10.0, name="memory", debugger=CacheDebugger(metrics=m), timer=clock
    )
    return cache, m, clock


def test_size_evictions_and_expiries_are_told_apart(setup: Setup) -> None:
    cache, m, clock = setup
    for i, key in enumerate("abcde"):  # maxsize 3: d and e push out a and b
        cache[key] = i
    assert sample(m, "coda_cache_evictions_total", reason="size") == 2
    assert sample(m, "coda_cache_evictions_total", reason="expired") == 0
    assert sample(m, "coda_cache_entries") == 3

    clock.now += 11  # c, d, e expire
    cache["f"] = 5  # inserting expires the stale entries first: no room needed
    assert sample(m, "coda_cache_evictions_total", reason="expired") == 3
    assert sample(m, "coda_cache_evictions_total", reason="size") == 2
    assert sample(m, "coda_cache_entries") == 1

    clock.now += 5
    cache["g"], cache["h"] = 6, 7
    cache["i"] = 8  # full of live entries: f is evicted for size
    assert sample(m, "coda_cache_evictions_total", reason="size") == 3

    clock.now += 20
    assert cache.expire() == 3
    assert sample(m, "coda_cache_evictions_total", reason="expired") == 6
    assert sample(m, "coda_cache_entries") == 0 and len(cache) == 0

    stats = cache.debugger.get_stats()["cache_types"]["memory"]
    assert stats["evictions"] == {"size": 3, "expired": 6}


def test_mixed_expiry_and_size_in_one_insert(setup: Setup) -> None:
    cache, m, clock = setup
    cache["a"] = 1
    clock.now += 6
    cache["b"], cache["c"] = 2, 3
    clock.now += 5  # only a (t=1000) is past its ttl
    cache["d"] = 4  # expires a, then fits without a size eviction
    cache["e"] = 5  # full of live entries: b is evicted for size
    assert sample(m, "coda_cache_evictions_total", reason="expired") == 1
    assert sample(m, "coda_cache_evictions_total", reason="size") == 1
    assert "b" not in cache and {"c", "d", "e"} == {k for k in "cde" if k in cache}


def test_get_or_compute_counts_and_caches(setup: Setup) -> None:
    cache, m, _ = setup
    calls: list[str] = []

    def load(key: str) -> int:
        calls.append(key)
        return len(calls)

    assert cache.get_or_compute("x", lambda: load("x")) == 1
    assert cache.get_or_compute("x", lambda: load("x")) == 1
    assert calls == ["x"]
    assert sample(m, "coda_cache_requests_total", result="miss") == 1
    assert sample(m, "coda_cache_requests_total", result="hit") == 1
    assert sample(m, "coda_cache_load_duration_seconds_count") == 1
    assert cache.get("x") == 1 and cache.get("nope", -1) == -1
    assert sample(m, "coda_cache_requests_total", result="miss") == 2
    assert cache.peek("x") == 1  # not counted
    assert sample(m, "coda_cache_requests_total", result="hit") == 2


def test_a_failing_loader_caches_nothing(setup: Setup) -> None:
    cache, m, _ = setup

    def boom() -> int:
        raise RuntimeError("model offline")

    with pytest.raises(RuntimeError, match="model offline"):
        cache.get_or_compute("k", boom)
    assert "k" not in cache
    assert sample(m, "coda_cache_requests_total", result="miss") == 1
    assert sample(m, "coda_cache_load_duration_seconds_count") == 0
    assert cache.get_or_compute("k", lambda: 7) == 7


async def test_async_read_through(setup: Setup) -> None:
    cache, m, _ = setup
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return 42

    assert await cache.aget_or_compute("q", load) == 42
    assert await cache.aget_or_compute("q", load) == 42
    assert calls == 1
    assert sample(m, "coda_cache_requests_total", result="hit") == 1


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        ObservedTTLCache(0, 1.0, name="x")
    with pytest.raises(ValueError, match="ttl"):
        ObservedTTLCache(4, -1.0, name="x")
    with pytest.raises(ValueError, match="lowercase identifier"):
        ObservedTTLCache(4, 1.0, name="Bad Name")


def test_threads_hammering_keep_counts_consistent() -> None:
    m = CodaMetrics(process_collector=False)
    cache: ObservedTTLCache[int, int] = ObservedTTLCache(
        16, 60.0, name="memory", debugger=CacheDebugger(metrics=m)
    )
    per_thread, threads = 2000, 6
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for i in range(per_thread):
                key = (i * 7 + seed) % 40
                assert cache.get_or_compute(key, lambda k=key: k * k) == key * key
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    stats = cache.debugger.get_stats()["cache_types"]["memory"]
    assert stats["total"] == per_thread * threads
    assert len(cache) <= 16 and stats["entries"] == len(cache)
    # 40 keys through 16 slots: at least 24 pushed out; never more than the inserts allow
    loads = m.registry.get_sample_value(
        "coda_cache_load_duration_seconds_count", {"cache": "memory"}
    )
    assert loads == stats["misses"]
    assert 40 - 16 <= stats["evictions"]["size"] <= stats["misses"] - len(cache)
    assert stats["evictions"]["expired"] == 0
