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
from typing import Any

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
    up to ``backoff_max`` between attempts; a restart may take ``restart_timeout``.
    """

    check_interval: float = 30.0
    heartbeat_timeout: float = 5.0
    restart_timeout: float = 120.0
    failure_threshold: int = 2
    max_restarts: int = 3
    restart_period: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        for label in (
            "check_interval", "heartbeat_timeout", "restart_timeout", "restart_period",
            "backoff_initial",
        ):  # fmt: skip
            value = getattr(self, label)
            if not value > 0:
                raise ValueError(f"{label} must be positive, got {value}")
        if self.failure_threshold < 1 or self.max_restarts < 0:
            raise ValueError("failure_threshold must be >= 1 and max_restarts >= 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")


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


@dataclass
class ComponentState:
    """What the watchdog knows about one component (times are on the watchdog's clock)."""

    component: Component
    required: bool
    watched_since: float
    status: str = "unknown"
    heartbeat: dict[str, Any] | None = None
    heartbeat_at: str | None = None
    last_healthy_at: float | None = None
    failures: int = 0
    attempts: deque[float] = field(default_factory=deque)  # recovery attempts in the period
    restarts_total: int = 0
    next_retry_at: float | None = None
    last_error: str | None = None
    history: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.component.name

    @property
    def models_loaded(self) -> bool:
        return (self.heartbeat or {}).get("models_loaded", True) is not False

    def heartbeat_age(self, now: float) -> float:
        since = self.watched_since if self.last_healthy_at is None else self.last_healthy_at
        return max(0.0, now - since)

    def attempts_within(self, now: float, period: float) -> int:
        while self.attempts and self.attempts[0] <= now - period:
            self.attempts.popleft()
        return len(self.attempts)

    def record_check(self, healthy: bool, duration: float, error: str | None) -> None:
        entry: dict[str, Any] = {"timestamp": now_iso(), "healthy": healthy}
        if healthy:
            hb = self.heartbeat or {}
            entry["memory_usage"] = hb.get("memory_usage")  # None: no figure of its own
            entry["response_time"] = hb.get("response_time", round(duration, 6))
            entry["error_rate"] = hb.get("error_rate", 0)
        else:
            entry["error"] = error
        self.history.append(entry)

    def describe(self, now: float, period: float, leak: dict[str, Any] | None) -> dict[str, Any]:
        retry_in = None if self.next_retry_at is None else max(0.0, self.next_retry_at - now)
        return {
            "status": self.status,
            "required": self.required,
            "last_heartbeat": self.heartbeat,
            "last_heartbeat_at": self.heartbeat_at,
            "heartbeat_age_s": round(self.heartbeat_age(now), 3),
            "consecutive_failures": self.failures,
            "restarts": self.attempts_within(now, period),
            "restarts_total": self.restarts_total,
            "next_retry_at": self.next_retry_at,
            "retry_in_s": retry_in,
            "last_error": self.last_error,
            "leak": leak,
            "metrics": list(self.history)[-5:],
        }
