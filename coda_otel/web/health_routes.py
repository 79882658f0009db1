"""Health endpoints (and opt-in fault injection) on an aiohttp application.

    from aiohttp import web
    from coda_otel.web.health_routes import add_health_routes

    app = web.Application()
    add_health_routes(app, watchdog, fault_injector=injector, allow_fault_injection=False)

Routes (all JSON; every 4xx/5xx carries ``{"error": {"code", "message"}}``):

* ``GET /health``: overall status, a ``components`` object keyed by name (``status``,
  ``cause`` and ``reason`` when not healthy, last heartbeat, recent figures) and the
  ``process``'s memory. 200 while healthy or degraded (a component unknown, degraded for a
  resource or overload cause, unhealthy or recovering); 503 while a required component is
  ``failed`` (its restart budget spent: probed with backoff, healthy again by itself once a
  check passes), with an ``error`` object beside the status naming each one's reason.
* ``GET /health/live``: 200 while the process answers.
* ``GET /health/ready``: 200 while every required component can answer: it passed its last
  check, or is degraded for a resource or overload cause, with its models loaded; 503 (with
  an ``error`` object naming what it waits for) before the first check and while a required
  component is unhealthy, recovering or failed.
* ``POST /debug/components/{name}/reset``: operator action, :meth:`CodaWatchdog.reset`: the
  component's failures, restart count and probe backoff are forgotten and it is checked at
  once (status ``unknown`` until then); no transient cause needs it. 200 with the
  component's status; 404 for an unknown name. Always mounted: protect ``/debug/`` with the
  service's auth when it is reachable by others.
* ``POST /debug/faults`` ``{"component": "llm", "fault": "crash|hang|slow|unhealthy|leak"}``:
  202 when injected; 403 unless ``allow_fault_injection``; 400 for malformed JSON or an unknown
  component or fault. Every fault ends when the application shuts down (``on_shutdown``,
  before aiohttp waits for running handlers), so a turn held by a ``hang`` answers and a
  SIGTERM stops the server promptly.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from coda_otel.health.faults import FAULTS, FaultInjector
from coda_otel.health.watchdog import CodaWatchdog
from coda_otel.web.bodies import json_object
from coda_otel.web.errors import error_body, error_response

MAX_FAULT_BODY = 4096


def add_health_routes(
    app: web.Application,
    watchdog: CodaWatchdog,
    *,
    fault_injector: FaultInjector | None = None,
    allow_fault_injection: bool = False,
    overloaded: Callable[[], bool] | None = None,
) -> None:
    """Mount the health routes, the component reset and ``/debug/faults`` on ``app``.

    ``overloaded`` (e.g. a full turn queue) makes ``/health/ready`` answer 503 ``overloaded``
    while it is true, so a load balancer sends new work elsewhere; liveness is not affected.
    """
    if allow_fault_injection and fault_injector is None:
        raise ValueError("allow_fault_injection=True needs a fault_injector")

    async def health(request: web.Request) -> web.Response:
        status = watchdog.get_health_status()
        if status["overall_health"] != "unhealthy":
            return web.json_response(status)
        failed = sorted(
            f"{n} ({c['reason'] or 'no reason given'})"
            for n, c in status["components"].items()
            if c["status"] == "failed" and c["required"]
        )
        problem = error_body("unhealthy", f"required components failed: {', '.join(failed)}")
        return web.json_response({**problem, **status}, status=503)

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def ready(request: web.Request) -> web.Response:
        status = watchdog.get_health_status()
        body = {
            "ready": status["ready"],
            "overall_health": status["overall_health"],
            "components": {
                name: {
                    "status": c["status"],
                    "required": c["required"],
                    "cause": c["cause"],
                    "reason": c["reason"],
                }
                for name, c in status["components"].items()
            },
        }
        busy = False
        if overloaded is not None:
            try:
                busy = bool(overloaded())
            except Exception:  # a broken probe must not take readiness down
                busy = False
        body["overloaded"] = busy
        if status["ready"] and not busy:
            return web.json_response(body)
        if status["ready"]:
            problem = error_body("overloaded", "every turn slot and queue place is taken")
            return web.json_response({**problem, **body}, status=503)
        waiting = sorted(
            n
            for n, c in body["components"].items()
            if c["required"] and c["status"] not in ("healthy", "degraded")
        )
        problem = error_body("not_ready", f"waiting for: {', '.join(waiting) or 'a first check'}")
        return web.json_response({**problem, **body}, status=503)

    async def reset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        known = sorted(c.name for c in watchdog.components)
        if name not in known:
            return error_response(
                404, "unknown_component", f"unknown component {name[:100]!r}", components=known
            )
        watchdog.reset(name)
        component = watchdog.get_health_status()["components"][name]
        return web.json_response({"component": name, **component})

    async def faults(request: web.Request) -> web.Response:
        if not allow_fault_injection or fault_injector is None:
            return error_response(
                403,
                "fault_injection_disabled",
                "fault injection is disabled (start with --allow-fault-injection)",
            )
        # read() (bounded by the app's client_max_size) rather than the raw stream: a body
        # deadline middleware may already have read the body, and read() keeps it
        raw = await request.read()
        if len(raw) > MAX_FAULT_BODY:
            return error_response(
                400, "too_large", f"request body is larger than {MAX_FAULT_BODY} bytes"
            )
        try:
            body = json_object(raw)
        except ValueError as exc:
            return error_response(400, "bad_request", f'{exc} ({{"component": ..., "fault": ...}})')
        component, fault = body.get("component"), body.get("fault")
        if not isinstance(component, str) or not isinstance(fault, str):
            return error_response(
                400, "bad_request", '"component" and "fault" must both be strings'
            )
        try:
            fault_injector.inject(component, fault)
        except ValueError as exc:
            return error_response(400, "invalid_fault", str(exc), faults=list(FAULTS))
        body = {"component": component, "fault": fault, "status": "injected"}
        return web.json_response(body, status=202)

    async def end_faults(_: web.Application) -> None:
        if fault_injector is not None:
            fault_injector.clear_all()

    app.on_shutdown.append(end_faults)
    app.router.add_get("/health", health)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    app.router.add_post("/debug/components/{name}/reset", reset)
    app.router.add_post("/debug/faults", faults)
