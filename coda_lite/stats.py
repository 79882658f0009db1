"""Health bookkeeping shared by the stage classes (each stage is a health Component).

A stage records every call in a :class:`CallStats`, handing ``track`` the text it was given;
its ``get_heartbeat`` reports the real figures (last response time, error rate over the
recent calls)::

    stats = CallStats()
    with stats.track(text):
        audio = synthesize(text)
    stats.heartbeat(healthy=True, models_loaded=True)
    # {'healthy': True, 'models_loaded': True, 'response_time': 0.41, 'error_rate': 0.0, ...}

Only the component's own failures count in the error rate. The caller's are counted apart
(``input_errors``): an :class:`InputError` (bad audio...), and a ``TypeError``, ``ValueError``
(so ``UnicodeError``) or ``AttributeError`` raised while one of the inputs handed to ``track``
is malformed text (not a string, or not valid Unicode: see :func:`malformed_text`).

A real call that timed out (:meth:`CallStats.record_timeout`: the stage's deadline passed, or
the backend's own timeout) makes the heartbeat unhealthy whatever the component's own probe
says, until a real call succeeds again; a restart does not wipe that evidence (a restarted
component whose server still hangs is still hung).

The heartbeat's ``cause`` (the field :class:`coda_otel.protocols.Component` documents) tells
the supervisor whether a restart can help: ``"resource"`` while the last failure was a full
disk or exhausted memory (:func:`resource_error`: ENOSPC, EFBIG, EDQUOT, "database or disk is
full", "disk I/O error", ``MemoryError``; counted apart from the error rate, as the component
is not at fault, and cleared by the next call of the same ``kind`` that succeeds: a read that
works says nothing of a full disk, so ``track(text, kind="write")`` marks the writes);
``"overload"`` when a call timed
out while other calls ran beside it since the last success (it queued behind them);
``"fault"`` when a call timed out alone (hung). Without such evidence there is no ``cause``.

A heartbeat carries ``memory_usage`` only when the component passes its own figure (bytes);
the process's resident memory is the watchdog's to sample, once, not every component's.
"""

from __future__ import annotations

import collections
import errno
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from coda_lite.errors import INPUT_SHAPED, InputError, malformed_text

_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.ENOMEM})
_RESOURCE_TEXT = re.compile(
    r"no space left on device|database or disk is full|disk i/o error|file too large"
    r"|disk quota exceeded|cannot allocate memory",
    re.IGNORECASE,
)


def resource_error(exc: BaseException) -> bool:
    """True when ``exc`` says the machine ran out of disk or memory (no restart fixes it)."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return True
    return bool(_RESOURCE_TEXT.search(str(exc)))


class CallStats:
    """Thread-safe rolling record of the last ``window`` calls: durations and failures."""

    def __init__(self, window: int = 50) -> None:
        self._lock = threading.Lock()
        self._calls: collections.deque[bool] = collections.deque(maxlen=window)
        self.last_response_time: float | None = None
        self.last_error: str | None = None
        self.calls_total = 0
        self.errors_total = 0
        self.input_errors_total = 0
        self.restarts = 0
        self.timeouts_total = 0
        self.last_timeout: str | None = None  # set by a timed-out call, cleared by a success
        self.timeout_cause = "fault"  # "overload" when it timed out behind other calls
        self.resource_errors_total = 0
        self.last_resource_error: str | None = None  # cleared by a success of its kind
        self._resource_kind = "call"  # the kind of call that ran out of disk or memory
        self.inflight = 0  # calls inside track() now
        self._peak_inflight = 0  # most calls at once since the last success

    @contextmanager
    def track(self, *inputs: object, kind: str = "call") -> Iterator[None]:
        """Time the block and record whether it failed; ``inputs``: the text it was handed,
        ``kind``: what sort of call it is (only a success of the kind that ran out of disk or
        memory clears that evidence)."""
        start = time.perf_counter()
        with self._lock:
            self.inflight += 1
            self._peak_inflight = max(self._peak_inflight, self.inflight)
        try:
            yield
        except Exception as exc:
            seconds = time.perf_counter() - start
            if self._callers_fault(exc, inputs):
                self._record_input_error(seconds)
            elif resource_error(exc):
                self._record_resource_error(seconds, f"{type(exc).__name__}: {exc}", kind)
            else:
                self._record(seconds, f"{type(exc).__name__}: {exc}", kind)
                if isinstance(exc, TimeoutError):
                    self.record_timeout(f"{type(exc).__name__}: {exc}")
            raise
        else:
            self._record(time.perf_counter() - start, None, kind)
        finally:
            with self._lock:
                self.inflight -= 1

    @staticmethod
    def _callers_fault(exc: Exception, inputs: tuple[object, ...]) -> bool:
        if isinstance(exc, InputError):
            return True
        return isinstance(exc, INPUT_SHAPED) and any(
            malformed_text(value) is not None for value in inputs
        )

    def _record_input_error(self, seconds: float) -> None:
        with self._lock:  # not in the error-rate window: neither a failure nor a success
            self.last_response_time = seconds
            self.calls_total += 1
            self.input_errors_total += 1

    def _record_resource_error(self, seconds: float, error: str, kind: str) -> None:
        with self._lock:  # not the component's failure: the disk or memory ran out
            self.last_response_time = seconds
            self.calls_total += 1
            self.resource_errors_total += 1
            self.last_resource_error = error[:300]
            self._resource_kind = kind

    def _record(self, seconds: float, error: str | None, kind: str = "call") -> None:
        with self._lock:
            self.last_response_time = seconds
            self.calls_total += 1
            self._calls.append(error is not None)
            if error is not None:
                self.errors_total += 1
                self.last_error = error[:300]
            else:
                self.last_timeout = None  # a real call works again
                if kind == self._resource_kind:  # and so does the kind that ran out of room
                    self.last_resource_error = None
                self._peak_inflight = self.inflight - 1  # the others still running

    def record_timeout(self, why: str) -> None:
        """A real call timed out: unhealthy until a call succeeds (restarts do not clear it).

        Calls that ran side by side since the last success mean it queued behind others: the
        cause is ``overload``; a call that timed out alone hung: ``fault``."""
        with self._lock:
            self.timeouts_total += 1
            self.last_timeout = why[:300]
            queued = max(self._peak_inflight, self.inflight) > 1
            self.timeout_cause = "overload" if queued else "fault"

    @property
    def error_rate(self) -> float:
        with self._lock:
            return sum(self._calls) / len(self._calls) if self._calls else 0.0

    def reset_window(self) -> None:
        """Forget recent calls (after a restart, the component starts with a clean record)."""
        with self._lock:
            self._calls.clear()
            self.last_error = None
            self.restarts += 1

    def heartbeat(self, *, healthy: bool, models_loaded: bool, **extra: Any) -> dict[str, Any]:
        """The heartbeat figures; ``extra`` adds the component's own (``memory_usage=...``)."""
        rate = self.error_rate
        with self._lock:
            timed_out, timeout_cause = self.last_timeout, self.timeout_cause
            out_of = self.last_resource_error
            beat: dict[str, Any] = {
                "healthy": healthy and timed_out is None,
                "models_loaded": models_loaded,
                "response_time": self.last_response_time or 0.0,
                "error_rate": rate,
                "calls": self.calls_total,
                "errors": self.errors_total,
                "input_errors": self.input_errors_total,
                "restarts": self.restarts,
                "last_error": self.last_error,
                "timeouts": self.timeouts_total,
                "resource_errors": self.resource_errors_total,
                "inflight": self.inflight,
            }
        beat.update(extra)
        if timed_out is not None:
            beat["healthy"] = False
            beat["cause"] = timeout_cause
            beat["last_error"] = f"real calls time out (whatever the probe says): {timed_out}"
            if timeout_cause == "overload":
                beat["last_error"] += " (queued behind other calls)"
        if out_of is not None:
            beat["healthy"] = False
            beat["cause"] = "resource"
            beat["last_error"] = f"out of disk or memory (no restart frees it): {out_of}"
        return beat
