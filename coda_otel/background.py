"""Background threads that yield the CPU to the pipeline.

coda-otel's writer threads (conversation logs, snapshots) do work nobody waits for. On Linux
each thread has its own scheduling priority, so a writer can step back for the turn::

    def _run(self) -> None:
        lower_thread_priority()     # first thing in the thread's body
        ...

Elsewhere, or without permission, it does nothing. It cannot help with the GIL, only with
the CPU (the pipeline's native code, such as the embedding model, releases the GIL).
"""

from __future__ import annotations

import logging
import os
import threading

logger = logging.getLogger(__name__)

#: A nice value of 10: a quarter or so of the CPU share of a normal thread under contention.
BACKGROUND_NICENESS = 10


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> bool:
    """Lower the calling thread's CPU priority by ``niceness``; True when it took effect."""
    setpriority = getattr(os, "setpriority", None)
    if setpriority is None:
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
    except OSError as exc:
        logger.debug("could not lower the priority of %s: %s", threading.current_thread().name, exc)
        return False
    return True
