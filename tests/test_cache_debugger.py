"""CacheDebugger: measured time saved, stats, recommendations, thread safety."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from coda_otel.cache.debugger import CacheDebugger, RecommendationThresholds
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.metrics import CodaMetrics


def rules(debugger: CacheDebugger) -> dict[tuple[str, str | None], dict[str, object]]:
    return {(r["rule"], r.get("cache_type")): r for r in debugger.get_recommendations()}


def test_time_saved_is_zero_until_a_load_is_measured() -> None:
    d = CacheDebugger()
    d.record_cache_access("embedding", "k", hit=True)
    assert d.get_stats()["cache_types"]["embedding"]["time_saved_ms"] == 0.0
    d.record_cache_access("embedding", "k", hit=False)
    d.record_load("embedding", 0.040)
    d.record_cache_access("embedding", "k", hit=True)
    d.record_cache_access("embedding", "k", hit=True)
    stats = d.get_stats()["cache_types"]["embedding"]
    assert stats["time_saved_ms"] == pytest.approx(80.0)
    assert stats["avg_load_ms"] == pytest.approx(40.0)


def test_time_saved_follows_the_moving_average_of_load_cost() -> None:
    d = CacheDebugger()
    d.record_load("llm_response", 1.0)
    d.record_load("llm_response", 2.0)  # EWMA(0.2): 1.0 + 0.2 * (2.0 - 1.0) = 1.2
    d.record_cache_access("llm_response", "q", hit=True)
    assert d.get_stats()["time_saved_ms"] == pytest.approx(1200.0)
    # a caller that measured the avoided work itself is believed
    d.record_cache_access("llm_response", "q", hit=True, computation_time_ms=300.0)
    assert d.get_stats()["time_saved_ms"] == pytest.approx(1500.0)
    # a miss with computation_time_ms records the load
    d.record_cache_access("llm_response", "q2", hit=False, computation_time_ms=2200.0)
    assert d.get_stats()["cache_types"]["llm_response"]["avg_load_ms"] == pytest.approx(1400.0)


def test_real_loaders_slow_and_fast_are_credited_their_measured_cost() -> None:
    m = CodaMetrics(process_collector=False)
    d = CacheDebugger(metrics=m)
    slow: ObservedTTLCache[str, int] = ObservedTTLCache(8, 60.0, name="slow", debugger=d)
    fast: ObservedTTLCache[str, int] = ObservedTTLCache(8, 60.0, name="fast", debugger=d)

    def loader(seconds: float) -> int:
        time.sleep(seconds)
        return 1

    for cache, seconds in ((slow, 0.020), (fast, 0.002)):
        for key in ("a", "b", "a", "b", "a"):  # 2 misses (timed loads), 3 hits
            cache.get_or_compute(key, lambda s=seconds: loader(s))
    by = d.get_stats()["cache_types"]
    # sleep() never returns early, so each credited hit is worth at least the sleep
    assert by["slow"]["time_saved_ms"] >= 3 * 20.0
    assert by["fast"]["time_saved_ms"] >= 3 * 2.0
    assert by["slow"]["time_saved_ms"] == pytest.approx(3 * by["slow"]["avg_load_ms"])
    saved = m.registry.get_sample_value("coda_cache_time_saved_seconds_total", {"cache": "slow"})
    assert saved == pytest.approx(by["slow"]["time_saved_ms"] / 1000)


def test_stats_shape_and_reset() -> None:
    d = CacheDebugger()
    d.register_cache("embedding", maxsize=10, ttl=60.0)
    for hit in (True, True, False, True):
        d.record_cache_access("embedding", "k", hit=hit)
    d.record_eviction("embedding", "size", 2)
    d.record_eviction("embedding", "expired")
    d.set_entries("embedding", 7)
    s = d.get_stats()
    assert (s["hits"], s["misses"], s["total"], s["hit_rate"]) == (3, 1, 4, 0.75)
    assert s["evictions"] == {"size": 2, "expired": 1} and s["entries"] == 7
    c = s["cache_types"]["embedding"]
    spec_keys = {"hits", "misses", "total", "hit_rate", "time_saved_ms"}
    assert spec_keys | {"evictions", "entries", "avg_load_ms"} <= c.keys()
    assert (c["maxsize"], c["ttl"]) == (10, 60.0)
    d.reset_stats()
    s = d.get_stats()
    assert (s["total"], s["evictions"]["size"], s["entries"]) == (0, 0, 7)  # entries are a level
    d.record_cache_access("embedding", "k", hit=False)
    assert d.get_stats()["misses"] == 1


def test_disabled_debugger_records_nothing() -> None:
    m = CodaMetrics(process_collector=False)
    d = CacheDebugger(enabled=False, metrics=m)
    d.record_cache_access("embedding", "k", hit=True)
    d.record_load("embedding", 1.0)
    assert d.get_stats() == {} and d.get_recommendations() == []
    d.enabled = True
    assert d.get_stats()["total"] == 0


def test_bad_input_gets_clear_errors() -> None:
    d = CacheDebugger()
    with pytest.raises(ValueError, match="lowercase identifier"):
        d.register_cache("User Query: what is my password?")
    with pytest.raises(ValueError, match="'size' or 'expired'"):
        d.record_eviction("embedding", "flushed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fraction"):
        RecommendationThresholds(low_cache_hit_rate=1.5)
    with pytest.raises(ValueError, match=">= 0"):
        RecommendationThresholds(min_expiries=-1)
    # a key-like cache name at record time is folded, never becomes a label
    d.record_cache_access("user:42:query", "k", hit=True)
    assert set(d.get_stats()["cache_types"]) == {"other"}


def test_keys_are_never_logged_in_clear(caplog: pytest.LogCaptureFixture) -> None:
    d = CacheDebugger()
    with caplog.at_level(logging.DEBUG, logger="coda_otel"):
        d.record_cache_access("embedding", "my secret question", hit=False)
    assert caplog.records and "my secret question" not in caplog.text


def test_healthy_pattern_gets_no_recommendations() -> None:
    d = CacheDebugger()
    d.register_cache("embedding", maxsize=1024, ttl=3600.0)
    d.record_load("embedding", 0.05)
    for i in range(400):
        d.record_cache_access("embedding", i, hit=i % 10 != 0)  # 90% hits
    d.record_eviction("embedding", "size", 3)
    d.record_eviction("embedding", "expired", 2)
    assert d.get_recommendations() == []


def test_spec_rules_fire_with_their_figures() -> None:
    d = CacheDebugger()
    for i in range(120):
        d.record_cache_access("memory", i, hit=i % 10 == 0)  # 10% hits
    recs = rules(d)
    overall = recs[("low_overall_hit_rate", None)]
    assert overall["priority"] == "high" and overall["hit_rate"] == pytest.approx(0.1)
    assert overall["total"] == 120
    low = recs[("low_cache_hit_rate", "memory")]
    assert low["priority"] == "high" and low["total"] == 120

    d2 = CacheDebugger()
    d2.record_load("llm_response", 0.5)
    for i in range(100):
        d2.record_cache_access("llm_response", i, hit=i % 2 == 0)  # 50% hits, 25 s saved
    valuable = rules(d2)[("valuable_cache", "llm_response")]
    assert valuable["time_saved_ms"] == pytest.approx(25_000.0)
    assert valuable["hit_rate"] == 0.5


def test_eviction_rules_fire_on_crafted_patterns() -> None:
    thresholds = RecommendationThresholds(min_size_evictions=10, min_expiries=10)
    d = CacheDebugger(thresholds=thresholds)
    d.register_cache("embedding", maxsize=64, ttl=30.0)
    for i in range(40):
        d.record_cache_access("embedding", i, hit=i % 4 == 0)  # 75% misses
    d.record_eviction("embedding", "size", 25)
    rec = rules(d)[("raise_maxsize", "embedding")]
    assert rec["size_evictions"] == 25 and rec["miss_rate"] == 0.75 and rec["maxsize"] == 64
    assert "raise maxsize (now 64)" in str(rec["message"])
    assert ("raise_ttl", "embedding") not in rules(d)

    d.record_eviction("embedding", "expired", 12)  # 12 of 30 misses followed an expiry
    rec = rules(d)[("raise_ttl", "embedding")]
    assert rec["expired_evictions"] == 12 and rec["expiry_share_of_misses"] == pytest.approx(0.4)
    assert rec["ttl"] == 30.0

    # the same pattern under stricter thresholds stays quiet
    strict = CacheDebugger(
        thresholds=RecommendationThresholds(min_size_evictions=100, min_expiries=100)
    )
    for i in range(40):
        strict.record_cache_access("embedding", i, hit=i % 4 == 0)
    strict.record_eviction("embedding", "size", 25)
    strict.record_eviction("embedding", "expired", 12)
    assert not {r for r, _ in rules(strict)} & {"raise_maxsize", "raise_ttl"}


def test_thread_safe_counts_are_exact() -> None:
    m = CodaMetrics(process_collector=False)
    d = CacheDebugger(metrics=m)
    d.record_load("embedding", 0.001)
    per_thread, threads = 5000, 8

    def hammer(n: int) -> None:
        for i in range(per_thread):
            d.record_cache_access("embedding", i, hit=(i + n) % 2 == 0)
            if i % 100 == 0:
                d.record_load("embedding", 0.001)
                d.get_stats()

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    s = d.get_stats()
    assert s["total"] == per_thread * threads
    assert s["hits"] == s["misses"] == per_thread * threads // 2
    assert s["time_saved_ms"] == pytest.approx(s["hits"] * 1.0)


def test_log_level_sets_the_cache_debuggers_own_logger_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tool = logging.getLogger("coda_otel.cache.debugger")
    before = (logging.getLogger().level, logging.getLogger("coda_otel").level, tool.level)
    try:
        CacheDebugger(enabled=True)
        assert tool.level == before[2]  # not given: nothing is set
        d = CacheDebugger(enabled=True, log_level="INFO")
        assert tool.level == logging.INFO
        assert (logging.getLogger().level, logging.getLogger("coda_otel").level) == before[:2]
        with caplog.at_level(logging.NOTSET):
            d = CacheDebugger(log_level=logging.WARNING)
            d.record_cache_access("embedding", "a key", hit=False)  # DEBUG: below WARNING now
        assert not [r for r in caplog.records if r.name == tool.name]
    finally:
        tool.setLevel(before[2])
