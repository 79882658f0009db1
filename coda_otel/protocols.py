"""The small protocols through which coda-otel observes any pipeline.

coda-otel never imports the application it observes. An application exposes itself through
these shapes (structural typing: no base class to inherit), and the tools take them as
arguments::

    class Embedder:                        # a Component for the watchdog
        name = "embedder"
        async def get_heartbeat(self) -> Mapping[str, Any]:
            return {"healthy": self.model is not None, "memory_usage": rss_bytes()}
        async def restart(self) -> None: self.model = load_model()
        async def force_restart(self) -> None: self.model = None; self.model = load_model()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Component(Protocol):
    """Something with a heartbeat that can be restarted (watched by ``CodaWatchdog``).

    ``get_heartbeat`` returns at least ``{"healthy": bool}``; optional figures the watchdog
    keeps: ``memory_usage`` (bytes), ``response_time`` (seconds), ``error_rate`` (0..1),
    ``models_loaded`` (bool, for readiness), ``last_error`` (str: why it is unhealthy) and
    ``cause`` (why, in one word, so that only what a restart can fix is restarted):

    * ``"resource"``: a full disk (ENOSPC, EFBIG, "database or disk is full", "disk I/O
      error") or exhausted memory; ``"overload"``: its calls time out because they queue
      behind other work. Either makes it ``degraded``; it is checked again every interval,
      never restarted, and healthy at the first check that passes.
    * ``"fault"`` (or no ``cause``): restarted after repeated failures. Without a ``cause``
      the watchdog reads ``last_error`` for the resource errors above.

    A component with ``restartable = False`` (a condition such as free disk space) is reported
    unhealthy but never restarted.
    """

    name: str

    async def get_heartbeat(self) -> Mapping[str, Any]: ...

    async def restart(self) -> None: ...

    async def force_restart(self) -> None: ...


@runtime_checkable
class MemoryStateSource(Protocol):
    """Something whose memory state can be read as one consistent copy (for snapshots).

    ``read_memory_state`` returns plain JSON-able data, copied under the source's own lock::

        {"short_term": {"turns": [{"role", "content", "timestamp", "turn_id"}, ...],
                        "turn_count": int},
         "long_term": {"memories": [{"id", "content", "importance", "topics", ...}, ...],
                       "memory_count": int,
                       "topics": [str, ...]}}

    A source whose memory belongs to owners also accepts ``read_memory_state(owner)`` and
    returns that owner's memory only (with ``"owner": owner``); snapshots use it to stay
    within one owner.

    The lists and the outer dicts are the reader's own, but the memories in them are
    read-only for the reader, and a source may hand out the very same object again for a
    memory unchanged since an earlier read. A source that does so never changes an object
    after handing it out: a changed memory is a new object (so a reader may keep what it
    made of a memory, such as its JSON text, for as long as it is handed that object)::

        def read_memory_state(self):
            with self.lock:       # self.memories: id -> dict, replaced (never edited) on change
                memories = list(self.memories.values())
            ...

    Fresh copies on every read are fine too (they are only slower to snapshot).
    """

    def read_memory_state(self) -> Mapping[str, Any]: ...
