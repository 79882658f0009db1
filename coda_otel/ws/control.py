"""The commands a debug WebSocket client may send, as the protocol the application implements.

class MyControl:                      # structural: no base class needed
    async def get_health_status(self) -> Mapping[str, Any]:
        return watchdog.get_health_status()
    ...

hub = DebugHub(MyControl(), metrics=metrics)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["DebugControl", "ServiceOverloaded"]


class ServiceOverloaded(RuntimeError):
    """Raised by a command the application cannot take on now (more work than it can serve):
    the client gets an ``overloaded`` error with ``retry_after_s``."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DebugControl(Protocol):
    """What the application lets a debug client do. Every method may take its time.

    ``get_cache_stats`` returns ``{"stats": {...}, "recommendations": [...]}`` and
    ``get_health_status`` the watchdog's status (``overall_health``, ``components``, ...).
    ``reset_component`` re-enables a component the watchdog marked failed and returns its
    status (``{"component": name, "status": ..., ...}``).
    ``inject_fault``, ``run_text_turn`` and ``reset_component`` raise ``ValueError`` for bad
    arguments such as an unknown component (the client gets ``invalid_params``);
    ``inject_fault`` raises ``PermissionError`` when disabled; ``run_text_turn`` raises
    :class:`ServiceOverloaded` when the turn was refused for want of capacity.
    ``interrupt`` stops a session's running turn, which ends with ``end_reason``
    ``"interrupted"``.
    """

    async def enable_debugging(self, feature: str, enabled: bool) -> Mapping[str, Any]: ...

    async def take_memory_snapshot(self, *, user_id: str | None = None) -> Mapping[str, Any]:
        """A snapshot of ``user_id``'s memory (sent only if given), answered once written."""
        ...

    async def get_cache_stats(self) -> Mapping[str, Any]: ...

    async def get_health_status(self) -> Mapping[str, Any]: ...

    async def run_text_turn(
        self, text: str, session_id: str | None, *, user_id: str | None = None
    ) -> Mapping[str, Any]:
        """One text turn; memory is ``user_id``'s, else ``session_id``'s (sent only if given)."""
        ...

    async def inject_fault(self, component: str, fault: str) -> Mapping[str, Any]: ...

    async def reset_component(self, component: str) -> Mapping[str, Any]: ...

    async def interrupt(self, session_id: str) -> Mapping[str, Any]:
        """Cut short the session's running turn (barge-in); returns ``{"session_id",
        "interrupted": bool, "conversation_id": str | None}`` (False: nothing was running)."""
        ...
