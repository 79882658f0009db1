"""What a debug WebSocket client may do to a running assistant (part of the composition root).

Implements coda-otel's ``DebugControl`` protocol over the parts it acts on::

    control = AppDebugControl(
        debugger=debugger, snapshots=snapshots, caches=caches, watchdog=watchdog,
        faults=faults, run_turn=manager.process_guarded, interrupt=manager.interrupt,
        allow_fault_injection=False,
    )
    hub = DebugHub(control, metrics=metrics)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from coda_lite.pipeline.admission import Overloaded
from coda_lite.pipeline.conversation import TurnResult
from coda_lite.pipeline.turns import TurnInterrupted
from coda_otel.cache.debugger import CacheDebugger
from coda_otel.health.faults import FAULTS, FaultInjector
from coda_otel.health.watchdog import CodaWatchdog
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.snapshots.emitter import MemorySnapshotEmitter
from coda_otel.snapshots.store import PREFIX, SUFFIX
from coda_otel.ws.control import ServiceOverloaded
from coda_otel.ws.protocol import MAX_TEXT_CHARS

RunTurn = Callable[..., Awaitable[TurnResult]]
Interrupt = Callable[[str], Awaitable[str | None]]  # session id -> interrupted conversation

FEATURES = ("tracing", "snapshots", "cache", "all")
SNAPSHOT_WAIT_S = 10.0  # a manual snapshot is answered once written, or fails after this


class AppDebugControl:
    """Debug commands mapped onto the debugger, caches, snapshots, watchdog and faults."""

    def __init__(
        self,
        *,
        debugger: ConversationPipelineDebugger,
        snapshots: MemorySnapshotEmitter,
        caches: CacheDebugger,
        watchdog: CodaWatchdog,
        faults: FaultInjector,
        run_turn: RunTurn,
        interrupt: Interrupt | None = None,
        allow_fault_injection: bool = False,
    ) -> None:
        self.debugger = debugger
        self.snapshots = snapshots
        self.caches = caches
        self.watchdog = watchdog
        self.faults = faults
        self.run_turn = run_turn
        self._interrupt = interrupt
        self.allow_fault_injection = allow_fault_injection

    async def enable_debugging(self, feature: str, enabled: bool) -> Mapping[str, Any]:
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; expected one of {', '.join(FEATURES)}")
        if feature in ("tracing", "all"):
            self.debugger.tracing = enabled  # spans only: metrics, events and logs go on
        if feature in ("snapshots", "all"):
            self.snapshots.enabled = enabled
        if feature in ("cache", "all"):
            self.caches.enabled = enabled
        return {
            "feature": feature,
            "enabled": enabled,
            "state": {
                "tracing": self.debugger.tracing,
                "snapshots": self.snapshots.enabled,
                "cache": self.caches.enabled,
            },
        }

    async def take_memory_snapshot(self, *, user_id: str | None = None) -> Mapping[str, Any]:
        """``user_id``'s memory (else the default owner's) to a file; answers once written."""
        emitter = self.snapshots

        def take() -> Path | None:  # a busy writer queue: wait for room rather than drop
            deadline = time.monotonic() + SNAPSHOT_WAIT_S
            while (path := emitter.take_snapshot(owner=user_id)) is None:
                if time.monotonic() > deadline:
                    return None
                emitter.flush(0.5)
            return path

        path = await asyncio.to_thread(take)
        if path is None:
            raise RuntimeError("the snapshot could not be taken (see the service log)")
        written = await asyncio.to_thread(emitter.flush, SNAPSHOT_WAIT_S)
        if not written or not path.is_file():
            raise RuntimeError("the snapshot was not written (disk full or writer busy)")
        snapshot_id = path.name.removeprefix(PREFIX).removesuffix(SUFFIX)
        return {"snapshot_id": snapshot_id, "path": str(path), "bytes": path.stat().st_size}

    async def get_cache_stats(self) -> Mapping[str, Any]:
        caches = self.caches
        return {"stats": caches.get_stats(), "recommendations": caches.get_recommendations()}

    async def get_health_status(self) -> Mapping[str, Any]:
        return self.watchdog.get_health_status()

    async def run_text_turn(
        self, text: str, session_id: str | None, *, user_id: str | None = None
    ) -> Mapping[str, Any]:
        if not text.strip():
            raise ValueError("text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
        try:
            result = await self.run_turn(text, session_id=session_id, user_id=user_id)
        except TurnInterrupted:
            return {"interrupted": True, "session_id": session_id, "transcript": text}
        except Overloaded as exc:  # answered as an error event with code "overloaded"
            raise ServiceOverloaded(str(exc), retry_after_s=exc.retry_after_s) from None
        return {
            "conversation_id": result.conversation_id,
            "trace_id": result.trace_id,
            "turn": result.turn,
            "transcript": result.transcript,
            "response": result.response,
        }

    async def interrupt(self, session_id: str) -> Mapping[str, Any]:
        """Cut short the session's running turn (it ends ``interrupted``)."""
        if self._interrupt is None:
            raise RuntimeError("this assistant cannot interrupt turns")
        conversation_id = await self._interrupt(session_id)
        return {
            "session_id": session_id,
            "interrupted": conversation_id is not None,
            "conversation_id": conversation_id,
        }

    async def inject_fault(self, component: str, fault: str) -> Mapping[str, Any]:
        if not self.allow_fault_injection:
            raise PermissionError("fault injection is off (start with --allow-fault-injection)")
        self.faults.inject(component, fault)
        return {"component": component, "fault": fault, "faults": sorted(FAULTS)}

    async def reset_component(self, component: str) -> Mapping[str, Any]:
        """Re-enable a component the watchdog marked failed; returns its status afterwards."""
        watchdog = self.watchdog
        known = sorted(c.name for c in watchdog.components)
        if component not in known:
            raise ValueError(f"unknown component {component[:64]!r}; known: {', '.join(known)}")
        watchdog.reset(component)
        status = watchdog.get_health_status()["components"][component]
        return {"component": component, **status}
