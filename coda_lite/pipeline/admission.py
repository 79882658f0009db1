"""Admission control: at most so many turns run at once; a few more wait their turn briefly;
the rest are refused at once with a clear answer, instead of every turn timing out together.

    admission = Admission(running=2, waiting=8, wait_s=20.0, on_wait=..., on_shed=...)
    async with admission.slot():          # raises Overloaded("queue_full" | "queue_timeout")
        await run_the_turn()
    admission.depth                       # turns waiting now (a gauge reads it at scrape time)

The scarce resource is the model: a CPU runs one generation at a time, so letting twenty turns
start together only makes all of them late (and their deadlines fail in stages that are not
to blame). A turn that cannot start within ``wait_s`` seconds, or finds ``waiting`` turns
already queued, raises :class:`Overloaded` carrying a ``retry_after_s`` hint; the service
answers it with 503 ``overloaded`` and ``Retry-After``. Waiting is first come, first served.
``on_wait(seconds)`` hears each admitted turn's wait and ``on_shed(reason)`` each refusal
(the composition root turns them into metrics); their errors never reach the turn.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

__all__ = ["SHED_REASONS", "Admission", "Overloaded"]

log = logging.getLogger(__name__)

#: Why a turn was refused: the queue was full, or its wait ran out.
SHED_REASONS = ("queue_full", "queue_timeout")


class Overloaded(RuntimeError):
    """More turns than the assistant can serve: this one was not started."""

    def __init__(self, reason: str, retry_after_s: float, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class Admission:
    """Bounded concurrency with a bounded, time-limited queue (see the module docstring)."""

    def __init__(
        self,
        running: int,
        waiting: int,
        wait_s: float,
        *,
        on_wait: Callable[[float], None] | None = None,
        on_shed: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if running < 1 or waiting < 0 or not wait_s > 0:
            raise ValueError(
                f"admission needs running >= 1, waiting >= 0 and wait_s > 0; "
                f"got {running}, {waiting}, {wait_s}"
            )
        self.running_limit = running
        self.waiting_limit = waiting
        self.wait_s = wait_s
        self._on_wait = on_wait
        self._on_shed = on_shed
        self._clock = clock
        self._running = 0
        self._queue: list[asyncio.Future[None]] = []

    @property
    def depth(self) -> int:
        """Turns waiting to start now."""
        return len(self._queue)

    @property
    def running(self) -> int:
        return self._running

    @property
    def full(self) -> bool:
        """True while a new turn would be refused at once (readiness says ``overloaded``)."""
        return self._running >= self.running_limit and len(self._queue) >= self.waiting_limit

    def retry_after_s(self) -> float:
        """A hint for refused callers: about one queue's worth of waiting, whole seconds."""
        return float(max(1, math.ceil(self.wait_s / 2)))

    def _shed(self, reason: str, message: str) -> Overloaded:
        if self._on_shed is not None:
            try:
                self._on_shed(reason)
            except Exception:
                log.exception("admission shed hook failed")
        return Overloaded(reason, self.retry_after_s(), message)

    def _waited(self, seconds: float) -> None:
        if self._on_wait is not None:
            try:
                self._on_wait(seconds)
            except Exception:
                log.exception("admission wait hook failed")

    async def _acquire(self) -> None:
        if self._running < self.running_limit and not self._queue:
            self._running += 1
            self._waited(0.0)
            return
        if len(self._queue) >= self.waiting_limit:
            raise self._shed(
                "queue_full",
                f"the assistant is busy: {self._running} turns running and "
                f"{len(self._queue)} waiting; try again shortly",
            )
        started = self._clock()
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(ticket)
        try:
            await asyncio.wait_for(asyncio.shield(ticket), self.wait_s)
        except TimeoutError:
            if ticket.done() and not ticket.cancelled():  # admitted as the wait ran out
                self._waited(self._clock() - started)
                return
            self._remove(ticket)
            raise self._shed(
                "queue_timeout",
                f"the assistant is busy: this turn waited {self.wait_s:g} s without starting; "
                "try again shortly",
            ) from None
        except BaseException:
            if ticket.done() and not ticket.cancelled():
                self._release()  # admitted, then cancelled before it ran: pass the slot on
            else:
                self._remove(ticket)
            raise
        self._waited(self._clock() - started)

    def _remove(self, ticket: asyncio.Future[None]) -> None:
        if ticket in self._queue:
            self._queue.remove(ticket)
        ticket.cancel()

    def _release(self) -> None:
        while self._queue:  # hand the slot to the oldest waiter still waiting
            ticket = self._queue.pop(0)
            if not ticket.done():
                ticket.set_result(None)
                return
        self._running -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Run the block as one admitted turn; raises :class:`Overloaded` when refused."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()
