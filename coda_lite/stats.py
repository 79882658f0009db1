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

A heartbeat carries ``memory_usage`` only when the component passes its own figure (bytes);
the process's resident memory is the watchdog's to sample, once, not every component's.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from coda_lite.errors import INPUT_SHAPED, InputError, malformed_text


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

    @contextmanager
    def track(self, *inputs: object) -> Iterator[None]:
        """Time the block and record whether it failed; ``inputs``: the text it was handed."""
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:
            seconds = time.perf_counter() - start
            if self._callers_fault(exc, inputs):
                self._record_input_error(seconds)
            else:
                self._record(seconds, f"{type(exc).__name__}: {exc}")
                if isinstance(exc, TimeoutError):
                    self.record_timeout(f"{type(exc).__name__}: {exc}")
            raise
        else:
            self._record(time.perf_counter() - start, None)

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

    def _record(self, seconds: float, error: str | None) -> None:
        with self._lock:
            self.last_response_time = seconds
            self.calls_total += 1
            self._calls.append(error is not None)
            if error is not None:
                self.errors_total += 1
                self.last_error = error[:300]
            else:
                self.last_timeout = None  # a real call works again

    def record_timeout(self, why: str) -> None:
        """A real call timed out: unhealthy until a call succeeds (restarts do not clear it)."""
        with self._lock:
            self.timeouts_total += 1
            self.last_timeout = why[:300]

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
            timed_out = self.last_timeout
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
            }
        beat.update(extra)
        if timed_out is not None:
            beat["healthy"] = False
            beat["last_error"] = f"real calls time out (whatever the probe says): {timed_out}"
        return beat
