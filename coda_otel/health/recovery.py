"""How the watchdog recovers a component: restart limit, exponential backoff, verification.

:class:`~coda_otel.health.watchdog.CodaWatchdog` owns one (``recover_component`` calls
:meth:`Recovery.attempt`); on its own it reads like this::

    recovery = Recovery(watchdog, report, verify=heartbeat_check, metrics=metrics,
                        clock=time.monotonic)
    await recovery.recover_if_due(state, "unhealthy")   # waits out the backoff, else attempts
    ok = await recovery.attempt(state)                   # now: restart, verify, force, verify

An attempt calls ``restart`` and verifies with a heartbeat; if the restart raised, outlasted
``restart_timeout`` or left the component unhealthy it calls ``force_restart`` and verifies
again. Later attempts wait ``backoff_initial`` seconds, doubling up to ``backoff_max``. A
component that would need more than ``max_restarts`` attempts within ``restart_period``
seconds is marked ``failed`` (an OTP supervisor's intensity and period) and is left alone
until the watchdog's ``reset``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from coda_otel.health.leak import LeakDetector
from coda_otel.health.state import (
    ComponentState,
    WatchdogSettings,
    call_with_timeout,
    describe_error,
)
from coda_otel.health.status import HealthReport
from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)

#: Checks a component's heartbeat now; returns (healthy, error).
Verify = Callable[[ComponentState], Awaitable[tuple[bool, str | None]]]


class Recovery:
    """Supervised restarts for the watchdog's components."""

    def __init__(
        self,
        settings: WatchdogSettings,
        report: HealthReport,
        leak_detector: LeakDetector | None,
        *,
        verify: Verify,
        metrics: CodaMetrics | None,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._report = report
        self._leak_detector = leak_detector
        self._verify = verify
        self._metrics = metrics
        self._clock = clock

    async def recover_if_due(
        self, st: ComponentState, reason: str, waiting: str = "recovering"
    ) -> None:
        """Attempt a recovery unless still backing off (then the status becomes ``waiting``)."""
        if st.next_retry_at is not None and self._clock() < st.next_retry_at:
            self._report.set_status(st, waiting)  # backing off
            return
        logger.info("recovering %s (%s)", st.component.name, reason)
        await self.attempt(st)

    async def attempt(self, st: ComponentState) -> bool:
        """Restart, verify, then force-restart and verify; schedules the next backoff."""
        cfg = self._settings
        name = st.component.name
        now = self._clock()
        if st.attempts_within(now, cfg.restart_period) >= cfg.max_restarts:
            logger.error(
                "%s: restart limit reached (%d in %g s); marked failed until reset",
                name, cfg.max_restarts, cfg.restart_period,
            )  # fmt: skip
            if self._metrics is not None:
                self._metrics.component_failed.labels(component=name).set(1)
            self._report.set_status(st, "failed")
            self._report.update_up(st)
            return False
        st.attempts.append(now)
        st.restarts_total += 1
        self._report.set_status(st, "recovering")
        ok = False
        for kind in ("restart", "force_restart"):
            if self._metrics is not None:
                self._metrics.component_restarts.labels(component=name, kind=kind).inc()
            try:
                await call_with_timeout(
                    getattr(st.component, kind), cfg.restart_timeout, f"{name} {kind}"
                )
            except Exception as exc:
                st.last_error = f"{kind} failed: {describe_error(exc)}"
                logger.warning("%s %s failed: %s", name, kind, describe_error(exc))
                continue
            ok, error = await self._verify(st)
            if ok:
                break
            st.last_error = f"after {kind}: {error}"
        delay = min(cfg.backoff_max, cfg.backoff_initial * 2 ** (len(st.attempts) - 1))
        st.next_retry_at = self._clock() + delay
        if ok:
            st.failures, st.last_error = 0, None
            if self._leak_detector is not None:
                self._leak_detector.reset(name)
            logger.info("recovered %s", name)
            self._report.set_status(st, "healthy")
        self._report.update_up(st)
        return ok
