"""CodaWatchdog: detection, supervised recovery, backoff, restart limits, isolation."""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from coda_otel.health.causes import cause_of_error, cause_of_heartbeat
from coda_otel.health.faults import FaultInjector
from coda_otel.health.leak import LeakDetector
from coda_otel.health.state import WatchdogSettings
from coda_otel.health.watchdog import CodaWatchdog
from coda_otel.metrics import CodaMetrics
from coda_otel.testing import eventually
from tests.support import FakeClock

MIB = 1024 * 1024


class Widget:
    """A component whose restart really resets it (unless ``broken``: restarts do not help)."""

    def __init__(self, name: str, clock: FakeClock | None = None, *, broken: bool = False) -> None:
        self.name = name
        self.clock = clock
        self.broken = broken
        self.models_loaded = True
        self.sick = False
        self.generation = 0
        self.heartbeats = 0
        self.calls: list[tuple[str, float]] = []

    async def get_heartbeat(self) -> Mapping[str, Any]:
        self.heartbeats += 1
        healthy = not (self.sick or self.broken)
        return {"healthy": healthy, "models_loaded": self.models_loaded, "gen": self.generation}

    async def restart(self) -> None:
        self.calls.append(("restart", self.clock() if self.clock else 0.0))
        self.sick = False
        self.generation += 1

    async def force_restart(self) -> None:
        self.calls.append(("force_restart", self.clock() if self.clock else 0.0))
        self.sick = False
        self.generation += 1


def sample(metrics: CodaMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics() -> CodaMetrics:
    return CodaMetrics(CollectorRegistry(), process_collector=False)


@pytest.mark.parametrize("fault", ["crash", "hang", "unhealthy"])
async def test_fault_detected_within_two_checks_and_recovered(
    fault: str, metrics: CodaMetrics
) -> None:
    clock = FakeClock()
    injector = FaultInjector()
    widget = Widget("llm", clock)
    watchdog = CodaWatchdog(
        [injector.wrap(widget)], 1.0, heartbeat_timeout=0.05, failure_threshold=2,
        metrics=metrics, clock=clock,
    )  # fmt: skip
    assert (await watchdog.check_health())["overall_health"] == "healthy"
    assert sample(metrics, "coda_component_up", component="llm") == 1.0

    injector.inject("llm", fault)
    assert injector.is_crashed("llm") is (fault == "crash")
    status = await watchdog.check_health()  # first failure: noticed, not yet acted on
    llm = status["components"]["llm"]
    assert (llm["status"], llm["consecutive_failures"], llm["restarts_total"]) == (
        "unhealthy",
        1,
        0,
    )
    assert llm["last_error"]
    assert sample(metrics, "coda_component_up", component="llm") == 0.0

    clock.advance(1.0)
    status = await watchdog.check_health()  # second failure: restart, verify -> healthy
    llm = status["components"]["llm"]
    assert llm["status"] == "healthy" and llm["restarts_total"] == 1
    assert widget.calls == [("restart", clock.now)] and widget.generation == 1
    assert injector.active("llm") is None
    assert sample(metrics, "coda_component_restarts_total", component="llm", kind="restart") == 1
    assert sample(metrics, "coda_component_up", component="llm") == 1.0
    assert watchdog.ready


async def test_leak_fault_is_flagged_and_restarts_only_when_configured(
    metrics: CodaMetrics, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    injector = FaultInjector(leak_chunk_bytes=MIB, leak_cap_bytes=16 * MIB)
    watching, restarting = Widget("watch", clock), Widget("restart", clock)
    components = injector.wrap_all([watching, restarting])

    def detector(restart: bool) -> LeakDetector:
        return LeakDetector(
            window=10, min_samples=3, slope_threshold_bytes_per_s=MIB / 2,
            restart_on_leak=restart, metrics=metrics,
        )  # fmt: skip

    observe = CodaWatchdog(components[:1], 1.0, leak_detector=detector(False),
                           metrics=metrics, clock=clock)  # fmt: skip
    heal = CodaWatchdog(components[1:], 1.0, leak_detector=detector(True), clock=clock)
    injector.inject("watch", "leak")
    injector.inject("restart", "leak")
    caplog.set_level(logging.WARNING, logger="coda_otel.health.leak")
    for _ in range(3):
        await observe.check_health()
        await heal.check_health()
        clock.advance(1.0)

    assert injector.held_bytes("watch") == 3 * MIB  # real memory, still held: no restart
    assert watching.calls == []
    status = observe.get_health_status()["components"]["watch"]
    assert status["status"] == "healthy" and status["leak"]["suspected"] is True
    assert sample(metrics, "coda_memory_leak_suspected", component="watch") == 1.0
    assert sample(metrics, "coda_memory_growth_bytes_per_second", component="watch") == MIB
    assert "memory leak suspected in watch" in caplog.text

    assert restarting.calls == [("restart", clock.now - 1.0)]  # restarted on the 3rd sample
    assert injector.active("restart") is None and injector.held_bytes("restart") == 0
    assert heal.get_health_status()["components"]["restart"]["leak"] is None


async def test_backoff_doubles_up_to_the_cap() -> None:
    clock = FakeClock()
    widget = Widget("stt", clock, broken=True)
    settings = WatchdogSettings(
        check_interval=1.0, failure_threshold=1, max_restarts=50, restart_period=1e6,
        backoff_initial=0.5, backoff_max=4.0,
    )  # fmt: skip
    watchdog = CodaWatchdog([widget], settings=settings, clock=clock)
    assert watchdog.settings is settings
    with pytest.raises(AttributeError):
        settings.max_restarts = 1  # type: ignore[misc]  # frozen: one source of truth
    waiting = set()
    for _ in range(100):
        status = await watchdog.check_health()
        if status["components"]["stt"]["retry_in_s"]:
            waiting.add(status["components"]["stt"]["status"])
        clock.advance(0.25)
    starts = [t for kind, t in widget.calls if kind == "restart"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    # each attempt escalates: restart did not help, so force_restart at the same instant
    assert [k for k, _ in widget.calls[:2]] == ["restart", "force_restart"]
    assert waiting == {"recovering"}


async def test_restart_budget_spent_then_half_open_probes_with_backoff_heal_it(
    metrics: CodaMetrics,
) -> None:
    clock = FakeClock()
    broken, fine = Widget("tts", clock, broken=True), Widget("cache", clock)
    watchdog = CodaWatchdog(
        [broken, fine], 1.0, failure_threshold=1, max_restarts=2, restart_period=60.0,
        backoff_initial=0.5, probe_backoff_max=8.0, metrics=metrics, clock=clock,
    )  # fmt: skip
    for _ in range(10):
        await watchdog.check_health()
        clock.advance(0.25)
    status = watchdog.get_health_status()
    tts = status["components"]["tts"]
    assert (tts["status"], tts["half_open"], tts["cause"]) == ("failed", True, "fault")
    assert tts["reason"] == "component reports unhealthy" and tts["probe_in_s"] is not None
    assert status["failed"] == ["tts"] and status["overall_health"] == "unhealthy"
    assert not watchdog.ready
    assert tts["restarts_total"] == 2 and len(broken.calls) == 4  # restart + force, twice
    assert sample(metrics, "coda_component_failed", component="tts") == 1.0

    # half-open: one probe (a check, no restart) at a time, the first 1 s after it failed,
    # then 2, 4, 8, 8 s apart
    probes: list[float] = []
    for _ in range(200):
        before = broken.heartbeats
        await asyncio.gather(watchdog.check_health(), watchdog.check_health())
        assert broken.heartbeats - before <= 1  # never two probes at once
        if broken.heartbeats > before:
            probes.append(clock.now)
        clock.advance(0.25)
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 8.0, 8.0], probes
    assert len(broken.calls) == 4  # a spent budget: never restarted again
    assert watchdog.get_health_status()["components"]["tts"]["status"] == "failed"

    broken.broken = False  # the cause went away: the next probe passes, nobody resets it
    for _ in range(40):
        status = await watchdog.check_health()
        if status["components"]["tts"]["status"] == "healthy":
            break
        clock.advance(0.25)
    tts = status["components"]["tts"]
    assert (tts["status"], tts["half_open"], tts["reason"], tts["cause"]) == (
        "healthy", False, None, None,
    )  # fmt: skip
    assert status["overall_health"] == "healthy" and watchdog.ready
    assert len(broken.calls) == 4 and tts["restarts_total"] == 2
    assert sample(metrics, "coda_component_failed", component="tts") == 0.0
    assert sample(metrics, "coda_component_up", component="tts") == 1.0


async def test_reset_retries_a_failed_component_at_once() -> None:
    clock = FakeClock()
    broken = Widget("tts", clock, broken=True)
    watchdog = CodaWatchdog([broken], 1.0, failure_threshold=1, max_restarts=1,
                            probe_backoff_max=300.0, clock=clock)  # fmt: skip
    for _ in range(3):
        clock.advance(0.5)
        await watchdog.check_health()
    assert watchdog.get_health_status()["components"]["tts"]["status"] == "failed"
    heartbeats = broken.heartbeats
    await watchdog.check_health()
    assert broken.heartbeats == heartbeats  # between probes it is left alone

    broken.broken = False
    watchdog.reset("tts")  # no waiting for the next probe
    assert watchdog.get_health_status()["components"]["tts"]["status"] == "unknown"
    status = await watchdog.check_health()
    assert status["components"]["tts"]["status"] == "healthy"
    assert status["overall_health"] == "healthy" and watchdog.ready
    with pytest.raises(ValueError, match="unknown component 'nope'"):
        watchdog.reset("nope")


class Store(Widget):
    """A store on a disk that fills up: it says so in its heartbeat, or raises like SQLite."""

    def __init__(self, name: str, clock: FakeClock, *, says_cause: bool) -> None:
        super().__init__(name, clock)
        self.full = False
        self.says_cause = says_cause

    async def get_heartbeat(self) -> Mapping[str, Any]:
        self.heartbeats += 1
        if self.full and not self.says_cause:
            raise sqlite3.OperationalError("database or disk is full")
        if self.full:
            return {"healthy": False, "cause": "resource", "last_error": "no room for memories"}
        return {"healthy": True}


@pytest.mark.parametrize("says_cause", [True, False], ids=["heartbeat-cause", "error-text"])
async def test_a_resource_cause_degrades_is_re_probed_never_restarted_and_heals(
    says_cause: bool, metrics: CodaMetrics
) -> None:
    clock = FakeClock()
    store = Store("memory_store", clock, says_cause=says_cause)
    watchdog = CodaWatchdog([store], 1.0, failure_threshold=1, max_restarts=3,
                            metrics=metrics, clock=clock)  # fmt: skip
    await watchdog.check_health()
    store.full = True
    for n in range(12):  # many times the restart budget
        status = await watchdog.check_health()
        clock.advance(1.0)
        assert store.heartbeats == n + 2  # checked again every interval
    component = status["components"]["memory_store"]
    assert (component["status"], component["cause"]) == ("degraded", "resource")
    reason = "no room for memories" if says_cause else "database or disk is full"
    assert reason in component["reason"]
    assert store.calls == [] and component["restarts_total"] == 0  # never restarted
    assert status["overall_health"] == "degraded" and status["failed"] == []
    assert watchdog.ready  # it still answers: reads work on a full disk
    degraded = {"component": "memory_store", "cause": "resource"}
    assert sample(metrics, "coda_component_degraded", **degraded) == 1.0
    assert sample(metrics, "coda_component_up", component="memory_store") == 0.0

    store.full = False  # space is freed: the next check finds it healthy, nobody resets it
    status = await watchdog.check_health()
    assert status["components"]["memory_store"]["status"] == "healthy"
    assert status["overall_health"] == "healthy" and store.calls == []
    assert sample(metrics, "coda_component_degraded", **degraded) == 0.0


class Queued(Widget):
    """A heartbeat that needs a worker thread of the default executor, like SQLite's probe."""

    async def get_heartbeat(self) -> Mapping[str, Any]:
        self.heartbeats += 1
        return await asyncio.to_thread(lambda: {"healthy": True})


async def test_an_overload_cause_degrades_and_is_not_restarted(metrics: CodaMetrics) -> None:
    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(executor)  # this test's loop only
    busy = threading.Event()
    clock = FakeClock()
    store = Queued("memory_store", clock)
    watchdog = CodaWatchdog(
        [store], 1.0, heartbeat_timeout=0.1, overload_probe_timeout=0.05, failure_threshold=1,
        max_restarts=1, metrics=metrics, clock=clock,
    )  # fmt: skip
    assert (await watchdog.check_health())["overall_health"] == "healthy"
    jobs = [loop.run_in_executor(None, busy.wait) for _ in range(2)]  # the model's sessions
    try:
        for _ in range(5):  # past the threshold and the restart budget: still no restart
            status = await watchdog.check_health()
            clock.advance(1.0)
        component = status["components"]["memory_store"]
        assert (component["status"], component["cause"]) == ("degraded", "overload"), component
        assert "did not answer within" in component["reason"]
        assert "worker threads are all busy" in component["reason"]
        assert store.calls == [] and status["failed"] == [] and watchdog.ready
        labels = {"component": "memory_store", "cause": "overload"}
        assert sample(metrics, "coda_component_degraded", **labels) == 1.0
    finally:
        busy.set()
        await asyncio.gather(*jobs)

    async def healthy() -> bool:  # the queue drained: healthy again by itself
        status = await watchdog.check_health()
        return bool(status["components"]["memory_store"]["status"] == "healthy")

    await eventually(healthy, 10, what="a healthy check once the queue drained")
    assert store.calls == []
    executor.shutdown(wait=False)


async def test_flapping_component_stops_being_restarted_at_the_limit() -> None:
    clock = FakeClock()
    injector = FaultInjector()
    widget = Widget("memory", clock)
    watchdog = CodaWatchdog(
        [injector.wrap(widget)], 1.0, failure_threshold=1, max_restarts=3,
        restart_period=60.0, backoff_initial=0.5, clock=clock,
    )  # fmt: skip
    for _ in range(30):  # every restart heals it; it falls ill again straight away
        if injector.active("memory") is None:
            injector.inject("memory", "unhealthy")
        await watchdog.check_health()
        clock.advance(1.0)
    assert len(widget.calls) == 3
    assert watchdog.get_health_status()["components"]["memory"]["status"] == "failed"

    watchdog.reset("memory")  # the operator re-enables supervision
    status = await watchdog.check_health()
    assert len(widget.calls) == 4 and status["components"]["memory"]["status"] == "healthy"


class Raiser(Widget):
    async def get_heartbeat(self) -> Mapping[str, Any]:
        self.heartbeats += 1
        raise RuntimeError("sensor unplugged")


class Stubborn(Widget):
    """A heartbeat that hangs and even swallows cancellation until released."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release = asyncio.Event()

    async def get_heartbeat(self) -> Mapping[str, Any]:
        self.heartbeats += 1
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                continue
        return {"healthy": False}


async def test_watchdog_survives_raising_and_hanging_heartbeats() -> None:
    raiser, stubborn, steady = Raiser("stt"), Stubborn("llm"), Widget("tts")
    changes: list[dict[str, Any]] = []

    def bad_listener(status: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    watchdog = CodaWatchdog(
        [raiser, stubborn, steady], 0.01, heartbeat_timeout=0.02, failure_threshold=1,
        max_restarts=1, backoff_initial=0.01, required=["tts"],
    )  # fmt: skip
    watchdog.add_listener(bad_listener)
    watchdog.add_listener(changes.append)
    task = asyncio.create_task(watchdog.start())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while loop.time() < deadline:
            status = watchdog.get_health_status()
            if status["failed"] == ["stt", "llm"] and steady.heartbeats >= 10:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail(f"watchdog stalled: {watchdog.get_health_status()}")
    finally:
        watchdog.stop()
        stubborn.release.set()
    await task
    assert status["components"]["tts"]["status"] == "healthy"
    assert status["overall_health"] == "degraded"  # only non-required components are down
    assert "did not answer within" in status["components"]["llm"]["metrics"][0]["error"]
    assert "RuntimeError: sensor unplugged" in status["components"]["stt"]["metrics"][0]["error"]
    assert {c["change"]["component"] for c in changes} == {"stt", "llm", "tts"}
    assert ("llm", "failed") in {(c["change"]["component"], c["change"]["status"]) for c in changes}


async def test_running_loop_recovers_an_injected_crash() -> None:
    injector = FaultInjector()
    widget = Widget("embedder")
    watchdog = CodaWatchdog([injector.wrap(widget)], 0.01, failure_threshold=2)
    task = asyncio.create_task(watchdog.start())
    loop = asyncio.get_running_loop()
    try:
        while watchdog.get_health_status()["components"]["embedder"]["status"] != "healthy":
            await asyncio.sleep(0.01)
        injector.inject("embedder", "crash")
        deadline = loop.time() + 10.0
        while widget.generation == 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert widget.generation == 1 and not injector.is_crashed("embedder")
        with pytest.raises(RuntimeError, match="already running"):
            await watchdog.start()
    finally:
        watchdog.stop()
    await task
    assert not watchdog.running


async def test_ready_needs_models_and_required_components() -> None:
    core, extra = Widget("llm"), Widget("cache")
    watchdog = CodaWatchdog([core, extra], failure_threshold=5, required=["llm"])
    assert not watchdog.ready and watchdog.get_health_status()["overall_health"] == "degraded"
    core.models_loaded = False
    await watchdog.check_health()
    assert not watchdog.ready
    core.models_loaded = True
    await watchdog.check_health()
    assert watchdog.ready
    extra.sick = True
    status = await watchdog.check_health()
    assert status["overall_health"] == "degraded" and watchdog.ready
    core.sick = True
    status = await watchdog.check_health()  # a required component down: degraded, not ready
    assert status["components"]["llm"]["status"] == "unhealthy"
    assert status["overall_health"] == "degraded" and not watchdog.ready
    assert status["components"]["llm"]["last_heartbeat"]["healthy"] is False
    assert len(status["components"]["llm"]["metrics"]) == 4  # one entry per check


async def test_overall_is_unhealthy_only_when_a_required_component_failed() -> None:
    core, extra = Widget("llm", broken=True), Widget("cache", broken=True)
    watchdog = CodaWatchdog([core, extra], failure_threshold=1, max_restarts=1,
                            backoff_initial=1e-6, required=["llm"])  # fmt: skip
    seen = set()
    for _ in range(3):
        status = await watchdog.check_health()
        seen.add((status["components"]["llm"]["status"], status["overall_health"]))
        await asyncio.sleep(0.001)  # past the backoff
    assert seen == {("recovering", "degraded"), ("failed", "unhealthy")}
    watchdog.reset("llm")
    assert watchdog.get_health_status()["overall_health"] == "degraded"


async def test_recover_component_on_demand_and_bad_configuration() -> None:
    widget = Widget("stt")
    watchdog = CodaWatchdog([widget], max_restarts=1)
    assert await watchdog.recover_component(widget) is True
    assert await watchdog.recover_component("stt") is False  # limit reached: failed
    assert watchdog.get_health_status()["components"]["stt"]["status"] == "failed"
    with pytest.raises(ValueError, match="unique"):
        CodaWatchdog([Widget("a"), Widget("a")])
    with pytest.raises(ValueError, match="not watched"):
        CodaWatchdog([Widget("a")], required=["b"])
    with pytest.raises(ValueError, match="heartbeat_timeout"):
        CodaWatchdog([Widget("a")], heartbeat_timeout=0)
    with pytest.raises(ValueError, match="backoff_max"):
        WatchdogSettings(backoff_initial=2.0, backoff_max=1.0)
    with pytest.raises(TypeError, match="lacks"):
        CodaWatchdog([object()])  # type: ignore[list-item]


class Quiet(Widget):
    """A heartbeat like the real stages': no memory figure of its own."""


async def test_leak_in_one_component_flags_it_and_the_process_never_the_others(
    metrics: CodaMetrics,
) -> None:
    clock = FakeClock()
    injector = FaultInjector(leak_chunk_bytes=MIB, leak_cap_bytes=32 * MIB)
    stt, llm, tts = Quiet("stt", clock), Quiet("llm", clock), Quiet("tts", clock)
    rss_samples: list[int] = []
    growth = [0]

    def process_rss() -> int:  # the process holds what the injected leak holds, and more
        rss_samples.append(400 * MIB + 2 * injector.held_bytes("llm") + growth[0])
        return rss_samples[-1]

    detector = LeakDetector(
        window=10, min_samples=3, slope_threshold_bytes_per_s=MIB / 2,
        restart_on_leak=True, sample_fn=process_rss, metrics=metrics,
    )  # fmt: skip
    watchdog = CodaWatchdog(injector.wrap_all([stt, llm, tts]), 1.0, leak_detector=detector,
                            metrics=metrics, clock=clock)  # fmt: skip
    injector.inject("llm", "leak")
    for _ in range(3):
        status = await watchdog.check_health()
        clock.advance(1.0)

    assert len(rss_samples) == 3  # the process is sampled once per check cycle
    assert status["process"]["leak"]["suspected"] is True
    assert status["process"]["memory_usage"] == rss_samples[-1]
    assert sample(metrics, "coda_memory_leak_suspected", component="process") == 1.0
    assert llm.calls == [("restart", clock.now - 1.0)]  # its own figure leaked: restarted
    assert injector.held_bytes("llm") == 0
    for quiet in (stt, tts):  # no figure of their own: never flagged, never restarted
        assert quiet.calls == [] and status["components"][quiet.name]["leak"] is None
        assert sample(metrics, "coda_memory_leak_suspected", component=quiet.name) == 0.0
        assert status["components"][quiet.name]["metrics"][-1]["memory_usage"] is None

    growth[0] = 0
    for _ in range(5):  # the process keeps growing, no component's own figure does
        growth[0] += 8 * MIB
        status = await watchdog.check_health()
        clock.advance(1.0)
    assert status["process"]["leak"]["suspected"] is True
    assert [len(c.calls) for c in (stt, llm, tts)] == [0, 1, 0]  # restart_on_leak: nobody


async def test_process_is_a_reserved_name_with_leak_detection() -> None:
    with pytest.raises(ValueError, match="'process' is reserved"):
        CodaWatchdog([Widget("process")], leak_detector=LeakDetector())
    CodaWatchdog([Widget("process")])  # fine without a leak detector


@pytest.mark.parametrize(
    ("failure", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "resource"),
        (OSError(errno.EFBIG, "File too large"), "resource"),
        (sqlite3.OperationalError("database or disk is full"), "resource"),
        (MemoryError(), "resource"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "fault"),
        (RuntimeError("model crashed"), "fault"),
        ({"healthy": False, "cause": "overload"}, "overload"),
        ({"healthy": False, "last_error": "sqlite3: disk I/O error"}, "resource"),
        ({"healthy": False, "cause": "bogus", "last_error": "probe failed"}, "fault"),
    ],
)
def test_causes_name_what_a_restart_cannot_fix(failure: Any, cause: str) -> None:
    found = cause_of_heartbeat(failure) if isinstance(failure, Mapping) else cause_of_error(failure)
    assert found == cause
