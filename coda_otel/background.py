"""Background threads that yield the CPU to the pipeline.

coda-otel's writer threads (conversation logs, snapshots) do work nobody waits for: both are a
:class:`BackgroundWriter`, a bounded queue that never blocks the caller, drained by one thread.
On Linux each thread has its own scheduling priority, so a writer steps back for the turn
(:func:`lower_thread_priority`, the first thing its thread does).

Elsewhere, or without permission, it does nothing. It cannot help with the GIL, only with
the CPU (the pipeline's native code, such as the embedding model, releases the GIL).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
_STOP = object()

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


class BackgroundWriter(Generic[T]):
    """A bounded queue drained by one daemon thread at lowered priority.

        writer = BackgroundWriter("coda-conversation-log", write_one, queue_size=256)
        writer.submit(record)      # never blocks: False (and ``dropped`` + 1) when full/closed
        writer.flush(5.0)          # wait until everything submitted was handled
        writer.close(5.0)          # handle what is queued, then stop the thread

    ``handle`` runs on the writer thread, one item at a time; an exception it raises is logged
    and the thread goes on with the next item. The thread starts on the first ``submit``.
    """

    def __init__(self, name: str, handle: Callable[[T], object], *, queue_size: int = 256) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        self.name = name
        self.dropped = 0
        self._handle = handle
        self._queue: queue.Queue[T | object] = queue.Queue(maxsize=queue_size)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, item: T) -> bool:
        """Queue ``item``; False when the writer is closed or its queue is full."""
        with self._idle:
            if self._closed:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1
                return False
            self._pending += 1
        return True

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Wait until every submitted item was handled; False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Handle what is queued (bounded by ``timeout``), then stop; True when all was done."""
        done = self.flush(timeout)
        with self._idle:
            self._closed = True
            thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=timeout)
            except queue.Full:
                logger.warning("%s still busy after %ss; not waiting", self.name, timeout)
                return False
            thread.join(timeout if done else 0.1)
        return done

    def _run(self) -> None:
        lower_thread_priority()  # nobody waits for this thread: the turn goes first
        while (item := self._queue.get()) is not _STOP:
            try:
                self._handle(item)  # type: ignore[arg-type]
            except Exception:  # a bug in one item must not stop the thread
                logger.exception("%s: an item failed", self.name)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()
