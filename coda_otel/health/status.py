"""What the watchdog tells the world: the health status, change listeners and ``up`` gauges.

:class:`~coda_otel.health.watchdog.CodaWatchdog` owns one and reaches it through its public API
(``get_health_status``, ``ready``, ``add_listener``); on its own it reads like this::

    report = HealthReport(states, settings, detector, metrics=metrics, clock=time.monotonic)
    state = ComponentState(llm, True, clock(), on_change=report.changed)
    report.adopt(state)                              # its series are registered
    report.add_listener(lambda status: hub.publish("health_status", status))
    state.begin_attempt(clock())                     # logged; listeners get a fresh status
    report.status()["overall_health"]                # healthy | degraded | unhealthy

Overall health is ``unhealthy`` only while a required component is ``failed`` (its restart
budget spent; it is probed with backoff and heals by itself); any component that is not
``healthy`` makes it ``degraded``. ``ready`` is True while every required component can
answer: ``healthy``, or ``degraded`` for a resource or overload cause, with its models loaded.
Each status change updates the ``coda_component_up``, ``coda_component_failed`` and
``coda_component_degraded{cause}`` gauges. Listeners run on the event loop and must be cheap;
one that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from coda_otel.health.leak import LeakDetector
from coda_otel.health.state import ComponentState, WatchdogSettings, describe_process, now_iso
from coda_otel.metrics import DEGRADED_CAUSES, CodaMetrics

logger = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("unknown", "healthy", "degraded", "unhealthy", "recovering", "failed")
HealthListener = Callable[[dict[str, Any]], None]


class HealthReport:
    """The status document and its change notifications over the watchdog's component states.

    ``settings`` gives the restart period, ``leak_detector`` the leak verdicts; ``metrics``, when
    given, gets each component's series registered plus its ``up`` and heartbeat-age gauges.
    """

    def __init__(
        self,
        states: Mapping[str, ComponentState],
        settings: WatchdogSettings,
        leak_detector: LeakDetector | None,
        *,
        metrics: CodaMetrics | None,
        clock: Callable[[], float],
    ) -> None:
        self._states = states
        self._settings = settings
        self._leak_detector = leak_detector
        self._metrics = metrics
        self._clock = clock
        self._listeners: list[HealthListener] = []
        for st in states.values():
            self.adopt(st)

    @property
    def ready(self) -> bool:
        """True while every required component can answer (healthy, or degraded by a resource
        or overload cause) with its models loaded."""
        return all(st.serving for st in self._states.values() if st.required)

    def add_listener(self, listener: HealthListener) -> None:
        """Call ``listener(status)`` on every status change; ``status["change"]`` says which."""
        self._listeners.append(listener)

    def status(self) -> dict[str, Any]:
        """Overall and per-component health as JSON-able data.

        Keys: ``overall_health``, ``ready``, ``components`` (by name) and ``process``.
        """
        now = self._clock()
        components = {name: self._describe_state(st, now) for name, st in self._states.items()}
        return {
            "overall_health": self._overall(),
            "ready": self.ready,
            "failed": [n for n, st in self._states.items() if st.status == "failed"],
            "components": components,
            "process": describe_process(self._leak_detector),
            "timestamp": now_iso(),
        }

    def changed(self, st: ComponentState, previous: str) -> None:
        """``st``'s status moved from ``previous``: log it, set its gauges, tell listeners."""
        logger.info(
            "component %s: %s -> %s%s", st.name, previous, st.status,
            f" ({st.cause}: {st.last_error})" if st.status != "healthy" and st.cause else "",
        )  # fmt: skip
        self._set_gauges(st)
        if not self._listeners:
            return
        snapshot = self.status()
        snapshot["change"] = {"component": st.name, "previous": previous, "status": st.status}
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                logger.exception("health listener %r failed", listener)

    def adopt(self, st: ComponentState) -> None:
        """Register ``st``'s series (when metrics are given) and set them from its status."""
        if self._metrics is None:
            return
        self._metrics.register_component(st.name)
        self._metrics.component_heartbeat_age.labels(component=st.name).set_function(
            lambda: st.heartbeat_age(self._clock())
        )
        self._set_gauges(st)

    def _set_gauges(self, st: ComponentState) -> None:
        metrics = self._metrics
        if metrics is None:
            return
        metrics.component_up.labels(component=st.name).set(int(st.status == "healthy"))
        metrics.component_failed.labels(component=st.name).set(int(st.status == "failed"))
        for cause in DEGRADED_CAUSES:
            degraded = st.status == "degraded" and st.cause == cause
            metrics.component_degraded.labels(component=st.name, cause=cause).set(int(degraded))

    def _overall(self) -> str:
        states = self._states.values()
        if any(st.required and st.status == "failed" for st in states):
            return "unhealthy"
        if any(st.status != "healthy" for st in states):
            return "degraded"
        return "healthy"

    def _describe_state(self, st: ComponentState, now: float) -> dict[str, Any]:
        leak = None
        detector = self._leak_detector
        if detector is not None:
            report = detector.report(st.name)
            leak = report.to_dict() if report is not None else None
        return st.describe(now, self._settings.restart_period, leak)
