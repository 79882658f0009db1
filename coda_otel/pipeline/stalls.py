"""Stages still running past their budget, reported while they run (not when they end).

The pipeline debugger owns one watcher; every stage registers itself on entry and leaves on
exit, and says when it makes progress (an llm token, a synthesized sentence)::

    watcher = StallWatcher({"llm": 5.0, "tts": 10.0})            # clock=time.monotonic
    entry = watcher.begin("llm", on_stall=lambda entry, idle_s, running_s: print(idle_s))
    entry.progress()            # each sign of life restarts the stage's budget
    watcher.check()             # report every stage silent past its budget (the timer does this)
    watcher.end(entry)
    watcher.oldest_age()        # seconds the oldest in-flight stage has been running

Time comes from ``clock`` (seconds, monotonic), like the watchdog's, so a test drives it::

    clock = FakeClock()
    watcher = StallWatcher({"llm": 5.0}, clock=clock)
    entry = watcher.begin("llm", on_stall)
    clock.advance(6); watcher.check()              # on_stall(entry, 6.0, 6.0), once

``on_stall`` is called once per silence: progress followed by another silence is reported
again. A stage opened on a running event loop is checked by one timer per loop and watcher
(``loop.call_later`` to the earliest deadline, re-armed after each check), not one timer per
stage: opening and closing a stage costs a set insert and removal, and nothing runs per token
but a timestamp store. A stage opened outside an event loop (a worker thread) is tracked for
its age and reported only by an explicit :meth:`StallWatcher.check`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger(__name__)

__all__ = ["Clock", "InFlight", "StallCallback", "StallWatcher"]

Clock = Callable[[], float]
_MIN_DELAY = 0.01  # s: a timer never fires sooner than this after the last check


class InFlight:
    """One running stage as the watcher sees it."""

    __slots__ = (
        "budget",
        "clock",
        "last_progress",
        "loop",
        "on_stall",
        "stage",
        "stalled",
        "stalls",
        "started",
    )

    def __init__(
        self,
        stage: str,
        budget: float | None,
        on_stall: StallCallback | None,
        clock: Clock,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.stage = stage
        self.budget = budget
        self.on_stall = on_stall
        self.clock = clock
        self.loop = loop  # whose timer checks this stage (None: only explicit checks)
        self.started = self.last_progress = clock()
        self.stalled = False  # reported, and no progress since
        self.stalls = 0

    def progress(self) -> None:
        """The stage is alive: its budget starts again now."""
        self.last_progress = self.clock()
        self.stalled = False

    def due(self, now: float) -> float | None:
        """When this stage must be looked at next (None: it has no budget to watch)."""
        if self.budget is None or self.on_stall is None:
            return None
        return now + self.budget if self.stalled else self.last_progress + self.budget


StallCallback = Callable[[InFlight, float, float], None]  # (entry, idle s, running s)


class StallWatcher:
    """In-flight stages, their ages, and one timer per event loop (see the module doc)."""

    def __init__(
        self, budgets: Mapping[str, float] | None = None, *, clock: Clock = time.monotonic
    ) -> None:
        self.budgets = {k: float(v) for k, v in (budgets or {}).items() if v and v > 0}
        self.clock = clock
        self._inflight: set[InFlight] = set()
        self._timers: dict[asyncio.AbstractEventLoop, tuple[asyncio.TimerHandle, float]] = {}
        self._lock = threading.Lock()

    def begin(self, stage: str, on_stall: StallCallback | None = None) -> InFlight:
        budget = self.budgets.get(stage)
        loop: asyncio.AbstractEventLoop | None = None
        if budget is not None and on_stall is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # a stage in a worker thread: tracked, checked on demand
                loop = None
        entry = InFlight(stage, budget, on_stall, self.clock, loop)
        self._inflight.add(entry)  # one C call, atomic under the GIL: no lock per stage
        if loop is not None and budget is not None:
            armed = self._timers.get(loop)
            if armed is None or armed[1] > entry.started + budget:  # else that check covers it
                with self._lock:
                    self._arm(loop, entry.started + budget)
        return entry

    def end(self, entry: InFlight) -> None:
        """The stage is over (its timer, if it was the last, lapses at its next check).

        Its callback is dropped too: an ended stage is never reported, and a callback bound to
        the stage (which holds its entry) would otherwise keep the stage, its span and its
        content alive until the cyclic garbage collector ran.
        """
        self._inflight.discard(entry)
        entry.on_stall = None

    def oldest_age(self) -> float:
        """Seconds the oldest in-flight stage has been running (0 when none runs)."""
        oldest = min((e.started for e in tuple(self._inflight)), default=None)
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    def in_flight(self) -> list[InFlight]:
        return sorted(tuple(self._inflight), key=lambda e: e.started)

    def check(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Report every in-flight stage (of ``loop``, else all) silent past its budget."""
        now = self.clock()
        entries = [e for e in tuple(self._inflight) if loop is None or e.loop is loop]
        for entry in entries:
            budget, on_stall = entry.budget, entry.on_stall  # read once: end() may clear it
            if budget is None or on_stall is None or entry.stalled:
                continue
            idle = now - entry.last_progress
            if idle < budget:
                continue
            entry.stalled = True
            entry.stalls += 1
            try:
                on_stall(entry, idle, now - entry.started)
            except Exception:  # a reporter's failure never reaches the pipeline
                logger.warning("could not report the stall of %s", entry.stage, exc_info=True)

    # --- the per-loop timer -------------------------------------------------------------------
    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """Make sure ``loop`` checks by ``due`` (the caller holds the lock: arming is rare)."""
        armed = self._timers.get(loop)
        if armed is not None and armed[1] <= due:
            return  # an earlier check is coming; it re-arms for this stage
        if armed is not None:
            armed[0].cancel()
        else:  # a new timer: forget loops that closed with one pending
            for gone in [other for other in self._timers if other.is_closed()]:
                del self._timers[gone]
        delay = max(due - self.clock(), _MIN_DELAY)
        self._timers[loop] = (loop.call_later(delay, self._fire, loop), due)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._timers.pop(loop, None)
        self.check(loop)
        now = self.clock()
        entries = tuple(self._inflight)  # a copy made in one C call: stages come and go meanwhile
        dues = [d for e in entries if e.loop is loop and (d := e.due(now)) is not None]
        with self._lock:
            if dues and not loop.is_closed():
                self._arm(loop, max(min(dues), now + _MIN_DELAY))
