"""The debug console: the five debug views (pipeline, traces, memory, cache, health) as one page.

The page is served by the service it debugs and talks to it over the debug WebSocket
(``/ws``, same origin) plus a few read-only JSON routes for what the WebSocket does not carry
(the snapshot list and diffs)::

    from coda_otel.console import CONSOLE_OPEN_PATHS, add_console_routes

    security = debug_security(token=token, open_paths=(*OPEN_PATHS, *CONSOLE_OPEN_PATHS))
    app = web.Application(middlewares=[security])
    add_console_routes(app, ConsoleSettings(snapshots=store, token_required=token is not None))

The trace browser's routes (``/debug/traces``) come from the local trace store::

    add_trace_routes(app, trace_store, logs_dir=home / "pipeline_logs")

Then open ``http://127.0.0.1:8765/debug/``. The page and its scripts hold no secret and are
readable without the token; everything that reads or changes the service needs it.
"""

from coda_otel.console.routes import CONSOLE_OPEN_PATHS, ConsoleSettings, add_console_routes
from coda_otel.console.traces import add_trace_routes

__all__ = ["CONSOLE_OPEN_PATHS", "ConsoleSettings", "add_console_routes", "add_trace_routes"]
