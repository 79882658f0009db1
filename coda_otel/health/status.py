"""What the watchdog tells the world: the health status, change listeners and ``up`` gauges.

:class:`~coda_otel.health.watchdog.CodaWatchdog` owns one and reaches it through its public API
(``get_health_status``, ``ready``, ``add_listener``); on its own it reads like this::

    report = HealthReport(states, watchdog, metrics=metrics, clock=time.monotonic)
    report.add_listener(lambda status: hub.publish("health_status", status))
    report.set_status(states["llm"], "recovering")   # logged; listeners get a fresh status
    report.status()["overall_health"]                # healthy | degraded | unhealthy

Overall health is ``unhealthy`` only while a required component is ``failed``; any component
that is not ``healthy`` makes it ``degraded``. Listeners run on the event loop and must be
cheap; one that raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from coda_otel.health.leak import LeakDetector
from coda_otel.health.state import ComponentState, WatchdogSettings, describe_process, now_iso
from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("unknown", "healthy", "unhealthy", "recovering", "failed")
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
            self._adopt(st)

    @property
    def ready(self) -> bool:
        """True when every required component is healthy with its models loaded."""
        states = self._states.values()
        return all(st.status == "healthy" and st.models_loaded for st in states if st.required)

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

    def set_status(self, st: ComponentState, status: str) -> None:
        """Move ``st`` to ``status``; on a change, log it and tell every listener."""
        old, st.status = st.status, status
        if old == status:
            return
        logger.info("component %s: %s -> %s", st.component.name, old, status)
        if not self._listeners:
            return
        snapshot = self.status()
        snapshot["change"] = {"component": st.component.name, "previous": old, "status": status}
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                logger.exception("health listener %r failed", listener)

    def update_up(self, st: ComponentState) -> None:
        """Set the component's ``up`` gauge from its status (1 only when healthy)."""
        if self._metrics is not None:
            up = int(st.status == "healthy")
            self._metrics.component_up.labels(component=st.component.name).set(up)

    def _adopt(self, st: ComponentState) -> None:
        if self._metrics is None:
            return
        name = st.component.name
        self._metrics.register_component(name)
        self._metrics.component_heartbeat_age.labels(component=name).set_function(
            lambda: st.heartbeat_age(self._clock())
        )

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
