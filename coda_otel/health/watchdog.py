"""Supervise components: heartbeats with a timeout, restarts with backoff and a restart limit.

    watchdog = CodaWatchdog([stt, embedder, llm, tts], check_interval=30.0,
                            required=["stt", "llm", "tts"], metrics=metrics,
                            leak_detector=LeakDetector(metrics=metrics))
    watchdog.add_listener(lambda status: hub.publish("health_status", status))
    task = asyncio.create_task(watchdog.start())   # one check loop per component
    watchdog.get_health_status()["overall_health"]  # healthy | degraded | unhealthy
    watchdog.get_health_status()["process"]         # resident memory and its leak verdict
    watchdog.get_health_status()["components"]["llm"]["reason"]  # why it is not healthy
    watchdog.reset("llm")                           # operator: retry a failed one at once
    watchdog.stop(); await task

A heartbeat that raises, reports ``healthy: False`` or does not answer within
``heartbeat_timeout`` seconds fails the check, for a cause (:mod:`coda_otel.health.causes`):

* ``resource`` (disk full, out of memory: said by the heartbeat's ``cause`` field, or by its
  error) and ``overload`` (its heartbeat timed out while the process's worker threads are all
  busy, or the heartbeat says so): the component is ``degraded`` with that ``reason`` and
  checked again every interval, never restarted (a restart frees no disk and throws queued
  work away). It is ``healthy`` again at the first check that passes.
* ``fault`` (anything else): after ``failure_threshold`` such failures in a row the watchdog
  restarts the component, checks it, and force-restarts it if it is still unhealthy (or if
  ``restart`` raised or outlasted ``restart_timeout``). Later attempts wait
  ``backoff_initial`` seconds, doubling up to ``backoff_max``.

A component that would need more than ``max_restarts`` attempts within ``restart_period``
seconds is marked ``failed`` (an OTP supervisor's intensity and period; the mechanics live in
:mod:`coda_otel.health.recovery`): it is no longer restarted, but half-open like a circuit
breaker: one probe (a real check) after ``check_interval``, then after twice as long each time
one fails, up to ``probe_backoff_max``; the first probe that passes makes it ``healthy`` with
no operator involved (:meth:`CodaWatchdog.reset` stays, to retry at once). Every component is
checked on its own task, so one that hangs never delays the others; a heartbeat that ignores
cancellation is abandoned. Heartbeats must not block the event loop.

Overall health is ``unhealthy`` only while a required component is ``failed``; a component
that is unknown, degraded, unhealthy or recovering makes it ``degraded``. ``ready`` is True
while every required component can answer: healthy, or degraded (resource, overload), with
its models loaded (the status document and listeners: :mod:`coda_otel.health.status`). Every
figure of a component changes through :class:`~coda_otel.health.state.ComponentState`'s
transitions.

Memory: the process's resident memory is sampled once per check cycle into the leak detector
under the name ``"process"`` (so no component may be called that when one is given). A
component is sampled only when its heartbeat reports its own ``memory_usage``, and only such a
component is restarted for a leak (``restart_on_leak``); a process-wide leak only warns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from coda_otel.health.causes import (
    FAULT,
    OVERLOAD,
    TRANSIENT,
    QueueProbe,
    cause_of_error,
    cause_of_heartbeat,
)
from coda_otel.health.leak import PROCESS, LeakDetector
from coda_otel.health.recovery import Recovery
from coda_otel.health.state import (
    Check,
    ComponentState,
    WatchdogSettings,
    call_with_timeout,
    clean_heartbeat,
    describe_error,
    own_memory_leaks,
    sample_process,
)
from coda_otel.health.status import STATUSES, HealthListener, HealthReport
from coda_otel.metrics import CodaMetrics
from coda_otel.protocols import Component

__all__ = ["STATUSES", "CodaWatchdog", "HealthListener"]

logger = logging.getLogger(__name__)


class CodaWatchdog:
    """Checks components' heartbeats and restarts failing ones (see the module docstring)."""

    def __init__(
        self,
        components: Iterable[Component],
        check_interval: float = 30.0,
        *,
        heartbeat_timeout: float = 5.0,
        restart_timeout: float = 120.0,
        failure_threshold: int = 2,
        max_restarts: int = 3,
        restart_period: float = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        probe_backoff_max: float = 300.0,
        overload_probe_timeout: float = 0.5,
        settings: WatchdogSettings | None = None,
        required: Iterable[str] | None = None,
        metrics: CodaMetrics | None = None,
        leak_detector: LeakDetector | None = None,
        clock: Callable[[], float] = time.monotonic,
        queue_probe: QueueProbe | None = None,
    ) -> None:
        self.settings = settings or WatchdogSettings(  # validates; a given ``settings`` wins
            check_interval=check_interval,
            heartbeat_timeout=heartbeat_timeout,
            restart_timeout=restart_timeout,
            failure_threshold=failure_threshold,
            max_restarts=max_restarts,
            restart_period=restart_period,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            probe_backoff_max=probe_backoff_max,
            overload_probe_timeout=overload_probe_timeout,
        )
        comps = list(components)
        for comp in comps:
            if not isinstance(comp, Component):
                raise TypeError(f"{comp!r} lacks name/get_heartbeat/restart/force_restart")
        names = [c.name for c in comps]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {names}")
        if leak_detector is not None and PROCESS in names:
            raise ValueError(f"{PROCESS!r} is reserved for the process-wide memory series")
        wanted = set(names) if required is None else set(required)
        if unknown := wanted - set(names):
            raise ValueError(f"required components {sorted(unknown)} are not watched: {names}")
        self.leak_detector = leak_detector
        self._metrics = metrics
        self._clock = clock
        self._tasks: list[asyncio.Task[None]] = []
        self.running = False
        self._queue_probe = queue_probe or QueueProbe(self.settings.overload_probe_timeout)
        now = clock()
        self._states: dict[str, ComponentState] = {}
        self._report = HealthReport(
            self._states, self.settings, leak_detector, metrics=metrics, clock=clock
        )
        for comp in comps:
            st = ComponentState(comp, comp.name in wanted, now, on_change=self._report.changed)
            self._states[comp.name] = st
            self._report.adopt(st)
        self._recovery = Recovery(
            self.settings,
            leak_detector,
            verify=self._heartbeat,
            metrics=metrics,
            clock=clock,
        )

    # --- public API -------------------------------------------------------------------------
    @property
    def components(self) -> list[Component]:
        return [st.component for st in self._states.values()]

    @property
    def ready(self) -> bool:
        """True when every required component is healthy with its models loaded."""
        return self._report.ready

    def add_listener(self, listener: HealthListener) -> None:
        """Call ``listener(status)`` on every status change; ``status["change"]`` says which.

        Listeners run on the event loop and must be cheap (queue the work); errors are logged.
        """
        self._report.add_listener(listener)

    async def start(self) -> None:
        """Check every component every ``check_interval`` seconds until :meth:`stop`."""
        if self.running:
            raise RuntimeError("watchdog is already running")
        self.running = True
        self._tasks = [
            asyncio.create_task(self._watch(st), name=f"watchdog:{st.component.name}")
            for st in self._states.values()
        ]
        if self.leak_detector is not None:
            self._tasks.append(asyncio.create_task(self._watch_process(), name="watchdog:process"))
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the check loops (a running :meth:`start` returns)."""
        self.running = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def check_health(self) -> dict[str, Any]:
        """Check every component once, concurrently (recovering where due); return the status."""
        self._sample_process()
        await asyncio.gather(*(self._safe_check(st) for st in self._states.values()))
        return self.get_health_status()

    async def recover_component(self, component: Component | str) -> bool:
        """One supervised recovery attempt now (ignores backoff, honours the restart limit)."""
        st = self._state(component if isinstance(component, str) else component.name)
        if st.status == "failed":
            return False
        async with st.lock:
            return await self._recovery.attempt(st)

    def reset(self, name: str) -> None:
        """Operator action: forget failures, the restart count and the probe backoff, so a
        failed component is checked (and restarted when due) at once, not at its next probe."""
        st = self._state(name)
        if self.leak_detector is not None:
            self.leak_detector.reset(name)
        st.reset()

    def get_health_status(self) -> dict[str, Any]:
        """Overall and per-component health as JSON-able data.

        Keys: ``overall_health``, ``ready``, ``components`` (by name) and ``process``.
        """
        return self._report.status()

    # --- checking ---------------------------------------------------------------------------
    async def _watch(self, st: ComponentState) -> None:
        while self.running:
            await self._safe_check(st)
            delay = self.settings.check_interval
            if st.status == "recovering" and st.next_retry_at is not None:
                delay = min(delay, max(0.0, st.next_retry_at - self._clock()))
            await asyncio.sleep(delay)

    async def _watch_process(self) -> None:
        while self.running:
            self._sample_process()
            await asyncio.sleep(self.settings.check_interval)

    def _sample_process(self) -> None:
        if self.leak_detector is not None:
            sample_process(self.leak_detector, self._clock())

    async def _safe_check(self, st: ComponentState) -> None:
        try:
            await self._check_one(st)
        except Exception:
            logger.exception("watchdog check of %s failed", st.component.name)

    async def _check_one(self, st: ComponentState) -> None:
        if st.lock.locked() or not st.probe_due(self._clock()):
            return  # a check is already running; or failed, and its next probe is not due
        async with st.lock:
            started = self._clock()
            check = await self._heartbeat(st)
            ended = self._clock()
            if self._metrics is not None:
                self._metrics.component_check_duration.labels(component=st.name).observe(
                    max(0.0, ended - started)
                )
            st.record_check(check.healthy, ended - started, check.error, check.cause)
            if check.healthy:
                if st.status == "failed":
                    logger.info("%s passed its probe: healthy again", st.name)
                if self._leak_wants_restart(st, ended):
                    await self._recovery.recover_if_due(
                        st, "memory leak suspected", waiting="healthy"
                    )
                else:
                    st.mark_healthy(ended)
            else:
                await self._failed(st, check, ended)

    async def _failed(self, st: ComponentState, check: Check, now: float) -> None:
        cause = check.cause or FAULT
        logger.warning("%s failed its check (%s): %s", st.name, cause, check.error)
        if st.status == "failed":  # a half-open probe failed: wait longer for the next
            st.probe_failed(now, check.error, cause, cap=self.settings.probe_cap)
        elif cause in TRANSIENT:  # a restart would not help: report it, check again
            st.mark_degraded(cause, check.error)
        else:
            failures = st.mark_failed_check(check.error, cause)
            # a condition (free disk space), not a process: reported, never restarted
            restartable = getattr(st.component, "restartable", True) is not False
            if restartable and failures >= self.settings.failure_threshold:
                await self._recovery.recover_if_due(st, check.error or "unhealthy")
            else:
                st.mark_unhealthy()

    async def _heartbeat(self, st: ComponentState) -> Check:
        """Ask for a heartbeat and keep it (cleaned); say whether it passed, else why."""
        name = st.name
        try:
            raw = await call_with_timeout(
                st.component.get_heartbeat, self.settings.heartbeat_timeout, f"{name} heartbeat"
            )
        except TimeoutError as exc:
            # queued behind busy worker threads (overload) or stuck (a fault)?
            overloaded = await self._queue_probe.backed_up()
            why = "; the worker threads are all busy" if overloaded else ""
            return Check(False, describe_error(exc) + why, OVERLOAD if overloaded else FAULT)
        except Exception as exc:
            return Check(False, describe_error(exc), cause_of_error(exc))
        if not isinstance(raw, Mapping):
            return Check(False, f"heartbeat returned {type(raw).__name__}, not a mapping", FAULT)
        st.got_heartbeat(clean_heartbeat(raw))
        heartbeat = st.heartbeat or {}
        if not heartbeat.get("healthy", False):
            error = heartbeat.get("last_error")
            reason = error if isinstance(error, str) and error else "component reports unhealthy"
            return Check(False, reason, cause_of_heartbeat(heartbeat))
        return Check(True)

    def _leak_wants_restart(self, st: ComponentState, at: float) -> bool:
        if self.leak_detector is None:
            return False
        return own_memory_leaks(self.leak_detector, st.name, st.heartbeat, at)

    # --- bookkeeping ------------------------------------------------------------------------
    def _state(self, name: str) -> ComponentState:
        try:
            return self._states[name]
        except KeyError:
            raise ValueError(f"unknown component {name!r}; known: {sorted(self._states)}") from None
