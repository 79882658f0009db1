"""Stages still running past their budget, reported while they run (not when they end).

The pipeline debugger owns one watcher; every stage scope registers itself on entry and
leaves on exit, and says when it makes progress (an llm token, a synthesized sentence)::

    watcher = StallWatcher({"llm": 5.0, "tts": 10.0})
    entry = watcher.begin("llm", on_stall=lambda entry, idle: print("stalled", idle))
    entry.progress()            # each sign of life restarts the stage's budget
    watcher.end(entry)
    watcher.oldest_age()        # seconds the oldest in-flight stage has been running

A stage with a budget arms one timer on the running event loop (``loop.call_later``): when it
fires and the stage has shown no progress for ``budget`` seconds, ``on_stall`` is called once
for that silence; the timer re-arms until the stage ends, so progress followed by another
silence is reported again. Nothing runs per token but a timestamp store, and a stage opened
outside an event loop (a worker thread) is tracked for its age but never timed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

__all__ = ["InFlight", "StallCallback", "StallWatcher"]

_MIN_DELAY = 0.01  # s: a timer never re-arms sooner than this


class InFlight:
    """One running stage as the watcher sees it."""

    __slots__ = (
        "budget",
        "ended",
        "handle",
        "last_progress",
        "on_stall",
        "stage",
        "stalled",
        "stalls",
        "started",
    )

    def __init__(
        self, stage: str, budget: float | None, on_stall: StallCallback | None, now: float
    ) -> None:
        self.stage = stage
        self.budget = budget
        self.on_stall = on_stall
        self.started = now
        self.last_progress = now
        self.stalled = False  # reported, and no progress since
        self.stalls = 0
        self.ended = False
        self.handle: asyncio.TimerHandle | None = None

    def progress(self) -> None:
        """The stage is alive: its budget starts again now."""
        self.last_progress = time.monotonic()
        self.stalled = False


StallCallback = Callable[[InFlight, float], None]  # (entry, seconds without progress)


class StallWatcher:
    """In-flight stages, their ages, and a timer per budgeted stage (see the module doc)."""

    def __init__(self, budgets: Mapping[str, float] | None = None) -> None:
        self.budgets = {k: float(v) for k, v in (budgets or {}).items() if v and v > 0}
        self._inflight: dict[int, InFlight] = {}
        self._lock = threading.Lock()

    def begin(self, stage: str, on_stall: StallCallback | None = None) -> InFlight:
        budget = self.budgets.get(stage)
        entry = InFlight(stage, budget, on_stall, time.monotonic())
        with self._lock:
            self._inflight[id(entry)] = entry
        if budget is not None and on_stall is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a stage in a worker thread: tracked, not timed
                return entry
            entry.handle = loop.call_later(budget, self._check, entry, loop)
        return entry

    def end(self, entry: InFlight) -> None:
        entry.ended = True
        with self._lock:
            self._inflight.pop(id(entry), None)
        if entry.handle is not None:
            entry.handle.cancel()

    def oldest_age(self) -> float:
        """Seconds the oldest in-flight stage has been running (0 when none runs)."""
        with self._lock:
            oldest = min((e.started for e in self._inflight.values()), default=None)
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    def in_flight(self) -> list[InFlight]:
        with self._lock:
            return list(self._inflight.values())

    def _check(self, entry: InFlight, loop: asyncio.AbstractEventLoop) -> None:
        if entry.ended or entry.budget is None:
            return
        budget = entry.budget
        now = time.monotonic()
        idle = now - entry.last_progress
        if idle >= budget and not entry.stalled:
            entry.stalled = True
            entry.stalls += 1
            try:
                if entry.on_stall is not None:
                    entry.on_stall(entry, idle)
            except Exception:  # a reporter's failure never reaches the pipeline
                logger.warning("could not report the stall of %s", entry.stage, exc_info=True)
        delay = budget if entry.stalled else entry.last_progress + budget - now
        entry.handle = loop.call_later(max(delay, _MIN_DELAY), self._check, entry, loop)
