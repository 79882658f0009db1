"""Short pauses that let the pipeline run while a snapshot is being written.

    from coda_otel.snapshots.pacing import Pacer

    pace = Pacer()           # one per snapshot, shared by its steps
    for chunk in chunks:
        work(chunk)
        pace()               # sleeps PAUSE_S once WORK_S has passed since the last pause

The snapshot writer thread shares the GIL with the turn's threads, and the machine's cores
with the turn's native code (the embedding model). While the writer runs Python, a thread
that wants the GIL waits until the writer lets go, and a turn wants it hundreds of times (the
event loop after each hop to a worker thread, the model between its native operations).
``sleep(0)`` hands the GIL only to a thread already waiting and takes it straight back; a
pause lets the turn run a stretch of its own. Short stretches of work matter more than short
pauses: a turn overlapping a 10k-memory snapshot (Coda Lite, 40 rounds per setting, settings
alternating) measured 1.03-1.08x its time alone with 0.3 ms of work per 2 ms pause,
1.09-1.17x with 0.5 ms, 1.08-1.23x with 1 ms and 1.23x with 0.3 ms per 1 ms pause; the
snapshot's file took 10k: ~70, ~50, ~30 ms. The clock is the wall clock, writing the file
included: the kernel's work for the writer's writes (without the GIL) slows the overlapping
turn as well, and not counting it did worse (1.21-1.22x). Pausing by the clock rather than
every so many items means quick work pays for no pauses it does not need, and slow work
(encoding every memory afresh) never runs long between two of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds of work between two pauses.
WORK_S = 0.0005
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
