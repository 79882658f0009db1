"""Why a component failed a check, so the watchdog restarts only what a restart can fix.

    from coda_otel.health.causes import FAULT, OVERLOAD, RESOURCE, cause_of_error, QueueProbe

    cause_of_error(OSError(errno.ENOSPC, "No space left on device"))   # "resource"
    cause_of_heartbeat({"healthy": False, "cause": "overload"})        # "overload"
    cause_of_heartbeat({"healthy": False, "last_error": "database or disk is full"})  # resource
    await QueueProbe().backed_up()   # True while the default executor's queue is backed up

Three causes (the values of a heartbeat's optional ``cause`` field, see
:class:`coda_otel.protocols.Component`):

* ``resource``: the machine lacks something a restart cannot give back: disk space (ENOSPC,
  EFBIG, EDQUOT, SQLite's "database or disk is full" and "disk I/O error"), memory
  (``MemoryError``). The component is ``degraded`` and checked again each interval.
* ``overload``: the component answers late because it queues behind other work (a heartbeat
  that times out while the process's worker threads are all busy). ``degraded`` too: a
  restart would only throw the queued work away.
* ``fault``: anything else (a crash, a hang, an unhealthy probe with no resource or overload
  cause): restarting may fix it.
"""

from __future__ import annotations

import asyncio
import errno
import re
import time
from collections.abc import Mapping
from typing import Any

from coda_otel.metrics import DEGRADED_CAUSES

RESOURCE = "resource"
OVERLOAD = "overload"
FAULT = "fault"
CAUSES: tuple[str, ...] = (FAULT, RESOURCE, OVERLOAD)
#: causes a restart cannot fix: reported (status ``degraded``), re-probed, never restarted
TRANSIENT: frozenset[str] = frozenset(DEGRADED_CAUSES)

_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.ENOMEM})
_RESOURCE_TEXT = re.compile(
    r"no space left on device|database or disk is full|disk i/o error|file too large"
    r"|disk quota exceeded|cannot allocate memory|out of memory|\bMemoryError\b",
    re.IGNORECASE,
)


def cause_of_text(text: object) -> str | None:
    """``resource`` when an error message names a full disk or exhausted memory, else None."""
    return RESOURCE if isinstance(text, str) and _RESOURCE_TEXT.search(text) else None


def cause_of_error(exc: BaseException) -> str:
    """The cause of an exception raised by a heartbeat or a call (never ``overload``: a
    timeout alone does not say whether the work was queued or stuck)."""
    if isinstance(exc, MemoryError):
        return RESOURCE
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return RESOURCE
    return cause_of_text(str(exc)) or FAULT


def cause_of_heartbeat(heartbeat: Mapping[str, Any]) -> str:
    """The cause of an unhealthy heartbeat: its own ``cause`` field when valid, else what its
    ``last_error`` names, else ``fault``."""
    said = heartbeat.get("cause")
    if said in CAUSES:
        return str(said)
    return cause_of_text(heartbeat.get("last_error")) or FAULT


class QueueProbe:
    """Tells whether work handed to the event loop's default executor is queueing.

    Heartbeats that touch blocking resources run there (``asyncio.to_thread``), behind every
    other job: when all its threads are busy (twelve sessions waiting for one model), a
    heartbeat times out although nothing is broken. The probe hands the executor a no-op; if
    that does not run within ``limit`` seconds, the executor is backed up (overload). One
    probe runs at a time; concurrent askers share its answer.
    """

    def __init__(self, limit: float = 0.5) -> None:
        if not limit > 0:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        self._running: asyncio.Future[bool] | None = None

    async def backed_up(self) -> bool:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._running)

    async def _probe(self) -> bool:
        started = time.monotonic()
        job = asyncio.ensure_future(asyncio.to_thread(time.monotonic))
        done, _ = await asyncio.wait({job}, timeout=self.limit)
        if not done:
            job.cancel()  # still queued: it will not run (or runs a harmless no-op)
            return True
        return job.result() - started > self.limit
