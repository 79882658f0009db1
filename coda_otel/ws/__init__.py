"""The WebSocket debug API: live pipeline, memory, cache and health events, and commands.

    from coda_otel.ws import DebugHub, add_debug_ws_route

    hub = DebugHub(control, metrics=metrics)   # control: what commands act on
    debugger.add_listener(hub)                 # stage events reach every client
    add_debug_ws_route(app, hub, token=token)  # GET /ws

Modules: ``hub`` (clients, subscriptions, fan-out), ``server`` (the aiohttp route, limits),
``protocol`` (parsing and encoding messages), ``schema`` (the JSON Schema of every message,
kept in ``schemas/ws-messages.json``).
"""

from __future__ import annotations

from coda_otel.ws.hub import DebugControl, DebugHub
from coda_otel.ws.server import add_debug_ws_route

__all__ = ["DebugControl", "DebugHub", "add_debug_ws_route"]
