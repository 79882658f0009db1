"""The watchdog's bookkeeping: one record per component, bounded calls, clean heartbeats.

Also the leak-detector plumbing and :class:`WatchdogSettings`, the settings its helpers read.

Used by :mod:`coda_otel.health.watchdog`; :func:`call_with_timeout` is useful on its own::

    from coda_otel.health.state import call_with_timeout

    heartbeat = await call_with_timeout(stt.get_heartbeat, 5.0, "stt heartbeat")
    # TimeoutError("stt heartbeat did not answer within 5 s") when it hangs
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from coda_otel.health.leak import PROCESS, LeakDetector, is_memory_figure
from coda_otel.protocols import Component

logger = logging.getLogger(__name__)
HISTORY = 20  # figures kept per component; the status shows the last five
_abandoned: set[asyncio.Future[Any]] = set()


@dataclass(frozen=True, slots=True)
class WatchdogSettings:
    """How the watchdog supervises, validated once (times in seconds).

        settings = WatchdogSettings(check_interval=5.0, max_restarts=3, restart_period=60.0)
        CodaWatchdog(components, settings=settings)

    A component fails a check when its heartbeat raises, says unhealthy or takes longer than
    ``heartbeat_timeout``; after ``failure_threshold`` failures in a row it is restarted, at
    most ``max_restarts`` times within ``restart_period``, waiting ``backoff_initial`` doubling
    up to ``backoff_max`` between attempts; a restart may take ``restart_timeout``. Past that
    budget the component is ``failed`` and probed alone: first after ``check_interval``, then
    twice as long after each failed probe, up to ``probe_backoff_max``. A heartbeat timeout
    counts as overload (not a fault) when a no-op handed to the default executor does not run
    within ``overload_probe_timeout`` (:class:`~coda_otel.health.causes.QueueProbe`).
    """

    check_interval: float = 30.0
    heartbeat_timeout: float = 5.0
    restart_timeout: float = 120.0
    failure_threshold: int = 2
    max_restarts: int = 3
    restart_period: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    probe_backoff_max: float = 300.0
    overload_probe_timeout: float = 0.5

    def __post_init__(self) -> None:
        for label in (
            "check_interval", "heartbeat_timeout", "restart_timeout", "restart_period",
            "backoff_initial", "probe_backoff_max", "overload_probe_timeout",
        ):  # fmt: skip
            value = getattr(self, label)
            if not value > 0:
                raise ValueError(f"{label} must be positive, got {value}")
        if self.failure_threshold < 1 or self.max_restarts < 0:
            raise ValueError("failure_threshold must be >= 1 and max_restarts >= 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")

    @property
    def probe_cap(self) -> float:
        """The longest wait between half-open probes (never below one check interval)."""
        return max(self.probe_backoff_max, self.check_interval)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def clean_heartbeat(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """Keep a heartbeat's JSON scalar figures only (bounded strings, no nested content)."""
    out: dict[str, Any] = {}
    for key, value in list(raw.items())[:50]:
        if not isinstance(key, str) or (isinstance(value, float) and not math.isfinite(value)):
            continue
        if value is None or isinstance(value, bool | int | float):
            out[key] = value
        elif isinstance(value, str):
            out[key] = value[:200]
    return out


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _forget(task: asyncio.Future[Any]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def call_with_timeout(call: Callable[[], Any], timeout: float, what: str) -> Any:
    """Await ``call()`` for at most ``timeout`` seconds, else raise :class:`TimeoutError`.

    Unlike ``asyncio.wait_for``, a call that ignores cancellation is abandoned (cancelled and
    left to finish on its own) rather than waited for, so the caller never hangs with it.
    """

    async def run() -> Any:
        result = call()
        return await result if inspect.isawaitable(result) else result

    task = asyncio.ensure_future(run())
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _abandoned.add(task)
        task.add_done_callback(_forget)
        raise TimeoutError(f"{what} did not answer within {timeout:g} s")
    return task.result()


def sample_process(detector: LeakDetector, at: float) -> None:
    """One sample of the whole process's memory, under :data:`~coda_otel.health.leak.PROCESS`."""
    try:
        detector.sample(PROCESS, None, at=at)
    except Exception:
        logger.exception("sampling the process's memory failed")


def own_memory_leaks(
    detector: LeakDetector, name: str, heartbeat: Mapping[str, Any] | None, at: float
) -> bool:
    """Sample a component's OWN ``memory_usage`` (if its heartbeat has one); True when that
    figure leaks and the detector is configured to restart on a leak."""
    own = (heartbeat or {}).get("memory_usage")
    try:
        if not is_memory_figure(own):
            if detector.report(name) is not None:
                detector.reset(name)  # it stopped reporting: its old trend means nothing
            return False
        report = detector.sample(name, own, at=at)
    except Exception:
        logger.exception("leak sampling of %s failed", name)
        return False
    return report.suspected and report.source == "component" and detector.restart_on_leak


def describe_process(detector: LeakDetector | None) -> dict[str, Any] | None:
    """The process's latest memory figure and leak verdict (None without a detector)."""
    if detector is None:
        return None
    report = detector.report(PROCESS)
    return {
        "memory_usage": None if report is None else report.latest_bytes,
        "leak": None if report is None else report.to_dict(),
    }


class Check(NamedTuple):
    """One heartbeat check: passed, else why (``error``) and of which kind (``cause``)."""

    healthy: bool
    error: str | None = None
    cause: str | None = None


#: Told of every status change: ``(state, previous_status)``.
StatusListener = Callable[["ComponentState", str], None]


def _ignore_change(st: ComponentState, previous: str) -> None:
    """The default status listener: nobody to tell."""


@dataclass
class ComponentState:
    """What the watchdog knows about one component (times are on the watchdog's clock).

    The only place its figures change: the watchdog and its helpers call the transitions
    below, which tell ``on_change`` when the status moves::

        st = ComponentState(llm, required=True, watched_since=clock(), on_change=report.changed)
        st.mark_healthy(now)                        # a check passed
        st.mark_degraded("resource", "disk full")   # a cause no restart fixes: re-probed
        if st.mark_failed_check("timeout") >= threshold: ...   # a fault: restart when due
        st.begin_attempt(now); st.end_attempt(ok, now, next_retry_in=0.5)
        st.mark_failed(now, probe_in=30.0)          # restart budget spent: half-open probes
        st.probe_due(now); st.probe_failed(now, "still down", "fault", cap=300.0)

    Status: ``unknown``, ``healthy``, ``degraded`` (a resource or overload ``cause``),
    ``unhealthy`` (a fault, not yet restarted), ``recovering`` or ``failed`` (restart budget
    spent: probed alone, with backoff, until a check passes). ``reason`` says why it is not
    healthy, ``cause`` which kind of reason (:mod:`coda_otel.health.causes`).
    """

    component: Component
    required: bool
    watched_since: float
    on_change: StatusListener = _ignore_change
    status: str = "unknown"
    cause: str | None = None
    heartbeat: dict[str, Any] | None = None
    heartbeat_at: str | None = None
    last_healthy_at: float | None = None
    failures: int = 0  # consecutive checks failed for a fault (not resource, not overload)
    attempts: deque[float] = field(default_factory=deque)  # recovery attempts in the period
    restarts_total: int = 0
    next_retry_at: float | None = None
    last_error: str | None = None
    probe_delay: float | None = None  # while failed: the current half-open backoff
    next_probe_at: float | None = None
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def models_loaded(self) -> bool:
        return (self.heartbeat or {}).get("models_loaded", True) is not False

    @property
    def serving(self) -> bool:
        """Healthy, or degraded for a cause that leaves it answering (with its models)."""
        return self.status in ("healthy", "degraded") and self.models_loaded

    def heartbeat_age(self, now: float) -> float:
        since = self.watched_since if self.last_healthy_at is None else self.last_healthy_at
        return max(0.0, now - since)

    def attempts_within(self, now: float, period: float) -> int:
        while self.attempts and self.attempts[0] <= now - period:
            self.attempts.popleft()
        return len(self.attempts)

    # --- transitions ------------------------------------------------------------------------
    def _move(self, status: str) -> None:
        old, self.status = self.status, status
        if old != status:
            self.on_change(self, old)

    def got_heartbeat(self, heartbeat: dict[str, Any]) -> None:
        """Keep a (cleaned) heartbeat and when it came."""
        self.heartbeat, self.heartbeat_at = heartbeat, now_iso()

    def mark_healthy(self, now: float) -> None:
        """A check passed: failures, reason and half-open probing are over."""
        self.failures, self.last_error, self.cause = 0, None, None
        self.probe_delay = self.next_probe_at = None
        self.last_healthy_at = now
        self._move("healthy")

    def mark_degraded(self, cause: str, reason: str | None) -> None:
        """A check failed for a cause no restart fixes: reported and checked again, no restart
        (and no failure counted towards one)."""
        self.failures, self.cause, self.last_error = 0, cause, reason
        self._move("degraded")

    def mark_failed_check(self, reason: str | None, cause: str = "fault") -> int:
        """A check failed for a fault; returns the failures in a row (the caller restarts the
        component at its threshold, else calls :meth:`mark_unhealthy`)."""
        self.failures += 1
        self.cause, self.last_error = cause, reason
        return self.failures

    def mark_unhealthy(self) -> None:
        self._move("unhealthy")

    def mark_waiting(self, status: str) -> None:
        """Backing off between recovery attempts, shown as ``status`` (recovering, healthy)."""
        self._move(status)

    def begin_attempt(self, now: float) -> None:
        """A recovery attempt (restart, verify, force restart, verify) starts now."""
        self.attempts.append(now)
        self.restarts_total += 1
        self._move("recovering")

    def attempt_step_failed(self, reason: str) -> None:
        self.last_error = reason

    def end_attempt(self, ok: bool, now: float, next_retry_in: float) -> None:
        """The attempt ended; the next may start ``next_retry_in`` seconds from now."""
        self.next_retry_at = now + next_retry_in
        if ok:
            self.mark_healthy(now)

    def mark_failed(self, now: float, probe_in: float) -> None:
        """Its restart budget is spent: no more restarts; one check (a half-open probe) in
        ``probe_in`` seconds, and it is healthy again as soon as one passes."""
        self.probe_delay = probe_in
        self.next_probe_at = now + probe_in
        self._move("failed")

    def probe_due(self, now: float) -> bool:
        """Not failed, or failed and its next half-open probe is due."""
        return self.status != "failed" or self.next_probe_at is None or now >= self.next_probe_at

    def probe_failed(self, now: float, reason: str | None, cause: str, cap: float) -> None:
        """A half-open probe failed: the next one waits twice as long (at most ``cap``)."""
        self.cause, self.last_error = cause, reason
        delay = min(cap, 2 * (self.probe_delay or cap / 2))
        self.probe_delay, self.next_probe_at = delay, now + delay

    def reset(self) -> None:
        """Operator action: forget failures, restarts and probing; ``unknown`` until checked."""
        self.failures, self.next_retry_at, self.last_error, self.cause = 0, None, None, None
        self.probe_delay = self.next_probe_at = None
        self.attempts.clear()
        self._move("unknown")

    # --- reading ----------------------------------------------------------------------------
    def record_check(
        self, healthy: bool, duration: float, error: str | None, cause: str | None = None
    ) -> None:
        entry: dict[str, Any] = {"timestamp": now_iso(), "healthy": healthy}
        if healthy:
            hb = self.heartbeat or {}
            entry["memory_usage"] = hb.get("memory_usage")  # None: no figure of its own
            entry["response_time"] = hb.get("response_time", round(duration, 6))
            entry["error_rate"] = hb.get("error_rate", 0)
        else:
            entry["error"] = error
            entry["cause"] = cause
        self.history.append(entry)

    def describe(self, now: float, period: float, leak: dict[str, Any] | None) -> dict[str, Any]:
        retry_in = None if self.next_retry_at is None else max(0.0, self.next_retry_at - now)
        probe_in = None if self.next_probe_at is None else max(0.0, self.next_probe_at - now)
        return {
            "status": self.status,
            "cause": self.cause,
            "reason": self.last_error,
            "required": self.required,
            "last_heartbeat": self.heartbeat,
            "last_heartbeat_at": self.heartbeat_at,
            "heartbeat_age_s": round(self.heartbeat_age(now), 3),
            "consecutive_failures": self.failures,
            "restarts": self.attempts_within(now, period),
            "restarts_total": self.restarts_total,
            "next_retry_at": self.next_retry_at,
            "retry_in_s": retry_in,
            "half_open": self.status == "failed",
            "probe_in_s": probe_in,
            "last_error": self.last_error,
            "leak": leak,
            "metrics": list(self.history)[-5:],
        }
