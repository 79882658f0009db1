"""Short pauses that hand the GIL to the pipeline while a snapshot is being written.

    from coda_otel.snapshots.pacing import Pacer

    pace = Pacer()           # one per snapshot, shared by its steps
    for chunk in chunks:
        work(chunk)
        pace()               # sleeps PAUSE_S once WORK_S has passed since the last pause

The snapshot writer thread shares the GIL with the turn's threads. While the writer runs
Python, a thread that wants the GIL (the event loop after each hop to a worker thread, and
a turn makes dozens) waits until the writer lets go: up to the interpreter's switch interval
(5 ms) each time. ``sleep(0)`` hands the GIL only to a thread already waiting and takes it
straight back; a pause of ``PAUSE_S`` lets a turn run a stretch of its own. Pausing by the
clock rather than every so many items means quick work (a snapshot whose memories are all
reused) pays for no pauses it does not need, and slow work (encoding every memory afresh)
never runs long between two of them. The clock is the wall clock: a writer that the OS
preempted (it runs at a lower priority) while holding the GIL kept turns waiting all the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds of work between two pauses.
WORK_S = 0.001
#: Seconds of each pause.
PAUSE_S = 0.002


class Pacer:
    """Called between pieces of work: pauses ``pause_s`` after each ``work_s`` of work."""

    def __init__(
        self,
        work_s: float = WORK_S,
        pause_s: float = PAUSE_S,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.work_s = work_s
        self.pause_s = pause_s
        self._clock = clock
        self._sleep = sleep
        self._since = clock()
        #: pauses taken so far
        self.pauses = 0

    def __call__(self) -> None:
        if self._clock() - self._since >= self.work_s:
            self._sleep(self.pause_s)
            self.pauses += 1
            self._since = self._clock()
