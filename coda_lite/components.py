"""Health bookkeeping shared by the stage classes (each stage is a health Component).

A stage records every call in a :class:`CallStats`; its ``get_heartbeat`` reports the real
figures (last response time, error rate over the recent calls, process memory)::

    stats = CallStats()
    with stats.track():
        text = recognise(audio)
    stats.heartbeat(healthy=True, models_loaded=True)
    # {'healthy': True, 'models_loaded': True, 'response_time': 0.41, 'error_rate': 0.0, ...}
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil


#: Bad input (empty, silent, non-WAV audio...) is the caller's fault, not the component's;
#: stages raise subclasses of this and it is not counted as a component error.
class InputError(ValueError):
    """The input handed to a stage cannot be processed; the message says what was wrong."""


class CallStats:
    """Thread-safe rolling record of the last ``window`` calls: durations and failures."""

    def __init__(self, window: int = 50) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._calls: collections.deque[bool] = collections.deque(maxlen=window)
        self.last_response_time: float | None = None
        self.last_error: str | None = None
        self.calls_total = 0
        self.errors_total = 0
        self.restarts = 0

    @contextmanager
    def track(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        except InputError:
            self._record(time.perf_counter() - start, None)
            raise
        except Exception as exc:
            self._record(time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
            raise
        else:
            self._record(time.perf_counter() - start, None)

    def _record(self, seconds: float, error: str | None) -> None:
        with self._lock:
            self.last_response_time = seconds
            self.calls_total += 1
            self._calls.append(error is not None)
            if error is not None:
                self.errors_total += 1
                self.last_error = error[:300]

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
        rate = self.error_rate
        with self._lock:
            beat: dict[str, Any] = {
                "healthy": healthy,
                "models_loaded": models_loaded,
                "response_time": self.last_response_time or 0.0,
                "error_rate": rate,
                "calls": self.calls_total,
                "errors": self.errors_total,
                "restarts": self.restarts,
                "last_error": self.last_error,
                "memory_usage": _rss(),
            }
        beat.update(extra)
        return beat


def _rss() -> int:
    try:
        return int(psutil.Process().memory_info().rss)
    except psutil.Error:
        return 0
