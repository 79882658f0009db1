"""What a debug WebSocket client may do to a running assistant (part of the composition root).

Implements coda-otel's ``DebugControl`` protocol over an :class:`~coda_lite.app.App`::

    hub.control = AppDebugControl(app)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from coda_otel.health.faults import FAULTS
from coda_otel.snapshots.store import PREFIX, SUFFIX

if TYPE_CHECKING:
    from coda_lite.app import App

FEATURES = ("tracing", "snapshots", "cache", "all")
MAX_TEXT_CHARS = 4000


class AppDebugControl:
    """Debug commands mapped onto the app's debugger, caches, snapshots and watchdog."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def enable_debugging(self, feature: str, enabled: bool) -> Mapping[str, Any]:
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; expected one of {', '.join(FEATURES)}")
        app = self.app
        if feature in ("tracing", "all"):
            app.debugger.enabled = enabled
        if feature in ("snapshots", "all"):
            app.snapshots.enabled = enabled
        if feature in ("cache", "all"):
            app.cache_debugger.enabled = enabled
        return {
            "feature": feature,
            "enabled": enabled,
            "state": {
                "tracing": app.debugger.enabled,
                "snapshots": app.snapshots.enabled,
                "cache": app.cache_debugger.enabled,
            },
        }

    async def take_memory_snapshot(self) -> Mapping[str, Any]:
        path = await asyncio.to_thread(self.app.snapshots.take_snapshot)
        if path is None:
            raise RuntimeError("the snapshot could not be taken (see the service log)")
        snapshot_id = path.name.removeprefix(PREFIX).removesuffix(SUFFIX)
        return {"snapshot_id": snapshot_id, "path": str(path)}

    async def get_cache_stats(self) -> Mapping[str, Any]:
        caches = self.app.cache_debugger
        return {"stats": caches.get_stats(), "recommendations": caches.get_recommendations()}

    async def get_health_status(self) -> Mapping[str, Any]:
        return self.app.watchdog.get_health_status()

    async def run_text_turn(self, text: str, session_id: str | None) -> Mapping[str, Any]:
        if not text.strip():
            raise ValueError("text is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise ValueError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
        result = await self.app.run_turn(text, session_id=session_id)
        return {
            "conversation_id": result.conversation_id,
            "trace_id": result.trace_id,
            "turn": result.turn,
            "transcript": result.transcript,
            "response": result.response,
        }

    async def inject_fault(self, component: str, fault: str) -> Mapping[str, Any]:
        if not self.app.config.server.allow_fault_injection:
            raise PermissionError("fault injection is off (start with --allow-fault-injection)")
        self.app.faults.inject(component, fault)
        return {"component": component, "fault": fault, "faults": sorted(FAULTS)}

    async def reset_component(self, component: str) -> Mapping[str, Any]:
        """Re-enable a component the watchdog marked failed; returns its status afterwards."""
        watchdog = self.app.watchdog
        known = sorted(c.name for c in watchdog.components)
        if component not in known:
            raise ValueError(f"unknown component {component[:64]!r}; known: {', '.join(known)}")
        watchdog.reset(component)
        status = watchdog.get_health_status()["components"][component]
        return {"component": component, **status}
