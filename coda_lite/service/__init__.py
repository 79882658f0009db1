"""The composition root: Coda Lite wired to coda-otel, served over HTTP, driven from the CLI.

    from coda_lite.service.app import build_app
    app = build_app(load_config())            # pipeline + debugger + metrics + watchdog + hub
    result = await app.turn("Hello", session_id="s1")

``app`` builds everything once, ``wiring`` holds the small adapters between the two packages,
``debug_control`` what a debug WebSocket client may do, ``server`` the aiohttp service and
``cli`` the ``coda-lite`` command. This is the only package of Coda Lite that imports coda_otel.
"""
