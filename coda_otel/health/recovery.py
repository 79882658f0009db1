"""How the watchdog recovers a component: restart budget, exponential backoff, verification.

:class:`~coda_otel.health.watchdog.CodaWatchdog` owns one (``recover_component`` calls
:meth:`Recovery.attempt`); on its own it reads like this::

    recovery = Recovery(settings, leak_detector, verify=heartbeat_check, clock=time.monotonic)
    await recovery.recover_if_due(state, "unhealthy")   # waits out the backoff, else attempts
    ok = await recovery.attempt(state)                   # now: restart, verify, force, verify

An attempt calls ``restart`` and verifies with a heartbeat; if the restart raised, outlasted
``restart_timeout`` or left the component unhealthy for a fault, it calls ``force_restart``
and verifies again. When the verification names a cause no restart fixes (resource,
overload), the attempt stops there and the component is ``degraded``. Later attempts wait
``backoff_initial`` seconds, doubling up to ``backoff_max``. A component that would need more
than ``max_restarts`` attempts within ``restart_period`` seconds is marked ``failed`` (an OTP
supervisor's intensity and period): no more restarts, but a half-open probe every so often
(see :meth:`ComponentState.mark_failed`), so it heals by itself once a check passes.
All figures change through :class:`~coda_otel.health.state.ComponentState`'s transitions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from coda_otel.health.causes import TRANSIENT
from coda_otel.health.leak import LeakDetector
from coda_otel.health.state import (
    Check,
    ComponentState,
    WatchdogSettings,
    call_with_timeout,
    describe_error,
)
from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)

#: Checks a component's heartbeat now.
Verify = Callable[[ComponentState], Awaitable[Check]]


class Recovery:
    """Supervised restarts for the watchdog's components."""

    def __init__(
        self,
        settings: WatchdogSettings,
        leak_detector: LeakDetector | None,
        *,
        verify: Verify,
        metrics: CodaMetrics | None,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._leak_detector = leak_detector
        self._verify = verify
        self._metrics = metrics
        self._clock = clock

    async def recover_if_due(
        self, st: ComponentState, reason: str, waiting: str = "recovering"
    ) -> None:
        """Attempt a recovery unless still backing off (then the status becomes ``waiting``)."""
        if st.next_retry_at is not None and self._clock() < st.next_retry_at:
            st.mark_waiting(waiting)  # backing off
            return
        logger.info("recovering %s (%s)", st.name, reason)
        await self.attempt(st)

    async def attempt(self, st: ComponentState) -> bool:
        """Restart, verify, then force-restart and verify; schedules the next backoff."""
        cfg = self._settings
        name = st.name
        now = self._clock()
        if st.attempts_within(now, cfg.restart_period) >= cfg.max_restarts:
            logger.error(
                "%s: restart limit reached (%d in %g s); no more restarts, probing it every "
                "%g s and more (up to %g s) until a check passes",
                name, cfg.max_restarts, cfg.restart_period, cfg.check_interval,
                cfg.probe_backoff_max,
            )  # fmt: skip
            st.mark_failed(now, probe_in=cfg.check_interval)
            return False
        st.begin_attempt(now)
        check = Check(False)
        for kind in ("restart", "force_restart"):
            if self._metrics is not None:
                self._metrics.component_restarts.labels(component=name, kind=kind).inc()
            try:
                await call_with_timeout(
                    getattr(st.component, kind), cfg.restart_timeout, f"{name} {kind}"
                )
            except Exception as exc:
                st.attempt_step_failed(f"{kind} failed: {describe_error(exc)}")
                logger.warning("%s %s failed: %s", name, kind, describe_error(exc))
                continue
            check = await self._verify(st)
            if check.healthy or check.cause in TRANSIENT:
                break  # healed, or down for a cause a harder restart cannot fix either
            st.attempt_step_failed(f"after {kind}: {check.error}")
        delay = min(cfg.backoff_max, cfg.backoff_initial * 2 ** (len(st.attempts) - 1))
        st.end_attempt(check.healthy, self._clock(), next_retry_in=delay)
        if check.healthy:
            if self._leak_detector is not None:
                self._leak_detector.reset(name)
            logger.info("recovered %s", name)
        elif check.cause in TRANSIENT:
            st.mark_degraded(check.cause, check.error)
        return check.healthy
