"""The console's HTTP side: the page, its assets, and read-only JSON for snapshots.

    add_console_routes(app, ConsoleSettings(snapshots=store, token_required=True))

Routes (under ``/debug``):

* ``GET /debug/``: the page; ``GET /debug/assets/<name>``: its scripts and styles, from a
  fixed list (the chart library is copied into ``static/vendor`` by ``make console-assets``
  from npm; without it the page works and says the charts are missing). Public: they hold no
  secret, and the page has to load before it can ask for the token.
* ``GET /debug/console/status``: ``{"token_required": bool, "charts": bool}``, public, so
  the page knows whether to ask for the token before it tries (and whether to load charts).
* ``GET /debug/console/config``: Jaeger link, fault injection on or off, whether content is
  captured, the ``enable_debugging`` switches' state.
* ``GET /debug/console/snapshots``: the snapshot list (oldest first) with counts per tier.
* ``GET /debug/console/diff?from=<id>&to=<id>``: what changed between two snapshots; memory
  and turn content is redacted and cut to a preview unless content capture is on.

The service's security middleware guards the non-public routes (token, Host, Origin).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from coda_otel import env
from coda_otel.console.redact import redact_diff
from coda_otel.files import InvalidIdError
from coda_otel.sanitize import Sanitizer
from coda_otel.snapshots.diff import diff_snapshots
from coda_otel.snapshots.store import SnapshotStore
from coda_otel.web.errors import error_response

STATIC_DIR = Path(__file__).parent / "static"
PAGE = "index.html"
#: Every file the page may load, with its media type; nothing else under static/ is served.
ASSETS: dict[str, str] = {
    "console.css": "text/css",
    "app.js": "text/javascript",
    "conn.js": "text/javascript",
    "util.js": "text/javascript",
    "chart.js": "text/javascript",
    "pipeline.js": "text/javascript",
    "memory.js": "text/javascript",
    "cache.js": "text/javascript",
    "health.js": "text/javascript",
    "traces.js": "text/javascript",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
}
PREFIX = "/debug"
CONSOLE_OPEN_PATHS: tuple[str, ...] = (
    PREFIX,
    f"{PREFIX}/",
    f"{PREFIX}/console/status",
    *(f"{PREFIX}/assets/{name}" for name in ASSETS),
)
# The page loads only its own files, talks only to its own origin, and is never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _charts_built() -> bool:
    return (STATIC_DIR / "vendor" / "uPlot.iife.min.js").is_file()


def _jaeger_url_from_env() -> str | None:
    url = (env.first(env.CODA_JAEGER_URL) or "").rstrip("/")
    return url if url.startswith(("http://", "https://")) else None


@dataclass
class ConsoleSettings:
    """What the console needs from the service it runs in."""

    snapshots: SnapshotStore | None = None
    token_required: bool = False
    allow_fault_injection: bool = False
    sanitizer: Sanitizer = field(default_factory=Sanitizer.from_env)
    #: Current ``enable_debugging`` switches, e.g. ``{"tracing": True, ...}``.
    debug_state: Callable[[], Mapping[str, bool]] | None = None
    jaeger_url: str | None = field(default_factory=_jaeger_url_from_env)


class _Console:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC_DIR / PAGE, headers={**SECURITY_HEADERS, "Content-Type": "text/html"}
        )

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        media = ASSETS.get(name)
        path = STATIC_DIR / name
        if media is None or not path.is_file():
            hint = " (run `make console-assets`)" if name.startswith("vendor/") else ""
            return error_response(404, "not_found", f"no console asset {name[:80]!r}{hint}")
        return web.FileResponse(path, headers={**SECURITY_HEADERS, "Content-Type": media})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"token_required": self.settings.token_required, "charts": _charts_built()}
        )

    async def config(self, request: web.Request) -> web.Response:
        s = self.settings
        state = dict(s.debug_state()) if s.debug_state is not None else None
        return web.json_response(
            {
                "jaeger_url": s.jaeger_url,
                "allow_fault_injection": s.allow_fault_injection,
                "capture_content": s.sanitizer.capture_content,
                "debugging": state,
            }
        )

    def _store(self) -> SnapshotStore:
        if self.settings.snapshots is None:
            raise web.HTTPNotFound()
        return self.settings.snapshots

    async def snapshots(self, request: web.Request) -> web.Response:
        infos = await asyncio.to_thread(self._store().list)
        items = []
        for info in infos:
            item = info.to_dict()
            del item["path"]  # where the files live is the operator's business, not the page's
            items.append(item)
        return web.json_response({"snapshots": items})

    async def diff(self, request: web.Request) -> web.Response:
        store = self._store()
        a, b = request.query.get("from"), request.query.get("to")
        if not a or not b:
            return error_response(400, "bad_request", "give two snapshot ids: ?from=<id>&to=<id>")
        try:
            diff = await asyncio.to_thread(lambda: diff_snapshots(store.load(a), store.load(b)))
        except InvalidIdError as exc:
            return error_response(400, "invalid_id", str(exc))
        except FileNotFoundError:
            return error_response(404, "unknown_snapshot", "no such snapshot", ids=[a, b])
        except ValueError as exc:  # unreadable or malformed snapshot file
            return error_response(422, "bad_snapshot", str(exc)[:300])
        return web.json_response(redact_diff(diff, self.settings.sanitizer))


def add_console_routes(app: web.Application, settings: ConsoleSettings | None = None) -> None:
    """Mount the console page, its assets and its JSON routes on ``app`` under ``/debug``.

    Add :data:`CONSOLE_OPEN_PATHS` to the security middleware's open paths, or a service
    with a token could not even show the token prompt.
    """
    console = _Console(settings or ConsoleSettings())
    router = app.router

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(f"{PREFIX}/")

    router.add_get(PREFIX, redirect)
    router.add_get(f"{PREFIX}/", console.page)
    router.add_get(PREFIX + "/assets/{name:[A-Za-z0-9_./-]+}", console.asset)
    router.add_get(f"{PREFIX}/console/status", console.status)
    router.add_get(f"{PREFIX}/console/config", console.config)
    router.add_get(f"{PREFIX}/console/snapshots", console.snapshots)
    router.add_get(f"{PREFIX}/console/diff", console.diff)


__all__ = ["CONSOLE_OPEN_PATHS", "ConsoleSettings", "add_console_routes"]
