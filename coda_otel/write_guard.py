"""What a telemetry writer does around each write: keep the disk reserve, count and log failures.

Telemetry must never starve the application's own data of disk, and a full disk must not
flood the log. Each writer (traces, conversation logs, snapshots) owns one guard::

    from coda_otel.write_guard import WriteGuard

    guard = WriteGuard("snapshots", metrics=metrics, room=disk.telemetry_may_write)
    if guard.may_write(len(data)):          # False: skipped to keep the reserve (counted)
        try:
            write(data)
            guard.succeeded()
        except OSError as exc:
            guard.failed(exc)               # counted by reason; logged once per burst

Failures are counted in ``coda_telemetry_write_failures_total{writer, reason}`` (reason
``disk_full``, ``reserve`` or ``error``). The first failure of a burst is logged as one line
(no traceback); the rest are counted silently until a write succeeds again (then one line
says how many failed) or :data:`QUIET_S` seconds have passed (then one summary line).
:class:`BurstLog` is that logging alone, for writers of other data (the memory store).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable

from coda_otel.metrics import TELEMETRY_WRITERS, CodaMetrics, bounded

logger = logging.getLogger(__name__)

#: Errors that mean "no space" (a full disk, a quota, a file-size limit).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
#: Within a burst, at most one log line per this many seconds.
QUIET_S = 60.0


class BurstLog:
    """Logs a run of failures as a few lines, not one per failure (thread-safe)::

        burst = BurstLog("memory_store")
        burst.failed("OperationalError: disk I/O error")  # ERROR: memory_store write failed (...)
        burst.failed("OperationalError: disk I/O error")  # silent (counted in the burst)
        burst.succeeded()   # WARNING: memory_store writes work again after 2 failed or skipped

    The first failure of a burst is one line; within a burst at most one summary line per
    :data:`QUIET_S` seconds; the first success after a burst says how many failed.
    """

    def __init__(
        self,
        what: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        log: logging.Logger | None = None,
    ) -> None:
        self.what = what
        self.failures = 0  # since start
        self._burst = 0  # failures since the last success
        self._logged_at: float | None = None
        self._clock = clock
        self._log = log if log is not None else logger
        self._lock = threading.Lock()

    def failed(self, message: str) -> None:
        """One more failure, ``message`` saying why (logged when the burst starts)."""
        now = self._clock()
        with self._lock:
            self.failures += 1
            self._burst += 1
            burst = self._burst
            log = self._logged_at is None or now - self._logged_at >= QUIET_S
            if log:
                self._logged_at = now
        if log and burst == 1:
            self._log.error("%s write failed (%s); further failures are counted, not logged",
                            self.what, message)  # fmt: skip
        elif log:
            self._log.error("%s writes still failing: %d in this burst; latest: %s",
                            self.what, burst, message)  # fmt: skip

    def succeeded(self) -> None:
        """A write went through: a burst of failures, if any, ends (one line says so)."""
        with self._lock:
            burst, self._burst, self._logged_at = self._burst, 0, None
        if burst:
            self._log.warning("%s writes work again after %d failed or skipped", self.what, burst)


class WriteGuard:
    """One writer's reserve check and failure accounting (thread-safe)."""

    def __init__(
        self,
        writer: str,
        *,
        metrics: CodaMetrics | None = None,
        room: Callable[[int], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = bounded(writer, TELEMETRY_WRITERS)
        self.metrics = metrics
        self.room = room
        self._burst = BurstLog(self.writer, clock=clock)

    @property
    def failures(self) -> int:
        """Writes failed or skipped since start."""
        return self._burst.failures

    def may_write(self, size: int) -> bool:
        """False (counted, reason ``reserve``) when writing ``size`` bytes would eat the reserve."""
        try:
            ok = self.room is None or self.room(size)
        except Exception:  # a broken check must not stop telemetry
            ok = True
        if not ok:
            self._count("reserve", f"skipped: free disk space is below the reserve ({size} bytes)")
        return ok

    def failed(self, exc: BaseException) -> None:
        """Count a failed write (``disk_full`` for no-space errors, else ``error``)."""
        no_space = isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS
        self._count("disk_full" if no_space else "error", f"{type(exc).__name__}: {exc}")

    def succeeded(self) -> None:
        """A write went through: a burst of failures, if any, ends (one line says so)."""
        self._burst.succeeded()

    def _count(self, reason: str, message: str) -> None:
        if self.metrics is not None:
            self.metrics.telemetry_write_failures.labels(writer=self.writer, reason=reason).inc()
        self._burst.failed(message)
