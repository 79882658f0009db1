"""The trace browser's JSON routes: search the local trace store, open one turn, read its log.

    add_trace_routes(app, store, logs_dir=Path("~/.coda/pipeline_logs").expanduser())

Routes (behind the service's security middleware, like every other debug route):

* ``GET /debug/traces?session_id=&status=&min_duration_ms=&since=&limit=``:
  ``{"traces": [{"trace_id", "session_id", "turn", "start", "duration_ms", "status",
  "end_reason", "voice_to_voice_ms", "stages": {name: ms}, ...}]}``, newest first. ``status``
  is ``ok``, ``error``, ``interrupted``, ``cancelled`` or ``stalled`` (any turn in which a
  stage stalled); ``since`` is ISO 8601 or Unix seconds; ``limit`` 1-500 (default 50).
* ``GET /debug/traces/{trace_id}``: ``{"trace_id", "summary", "spans": [...]}``, each span
  with its attributes and events, and ``offset_ms`` from the turn's start.
* ``GET /debug/traces/{trace_id}/log``: the turn's conversation log (as written: redacted).

A bad parameter answers 400, an unknown trace 404, in the one error shape.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from coda_otel.files import InvalidIdError, validate_id
from coda_otel.pipeline.conversation_log import read_log
from coda_otel.tracing.store import MAX_LIMIT, STATUSES, TraceQuery, TraceStore
from coda_otel.web.errors import error_response

__all__ = ["add_trace_routes", "parse_query"]

PREFIX = "/debug/traces"
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_PARAMS = ("session_id", "status", "min_duration_ms", "since", "limit")


def _since(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(
                "since must be ISO 8601 (2026-12-02T03:00:00Z) or Unix seconds"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError("since must be a time after 1970")
    return value


def parse_query(params: Mapping[str, str]) -> TraceQuery:
    """A :class:`TraceQuery` from URL parameters; ``ValueError`` says what is wrong."""
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(unknown)}; use {', '.join(_PARAMS)}")
    fields: dict[str, Any] = {}
    if params.get("session_id"):
        try:
            fields["session_id"] = validate_id(params["session_id"])
        except InvalidIdError as exc:
            raise ValueError(f"session_id: {exc}") from None
    if params.get("status"):
        if params["status"] not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        fields["status"] = params["status"]
    if params.get("min_duration_ms"):
        try:
            minimum = float(params["min_duration_ms"])
        except ValueError:
            minimum = math.nan
        if not math.isfinite(minimum) or minimum < 0:
            raise ValueError("min_duration_ms must be a number of milliseconds >= 0")
        fields["min_duration_ms"] = minimum
    if params.get("since"):
        fields["since"] = _since(params["since"])
    if params.get("limit"):
        raw = params["limit"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        fields["limit"] = int(raw)
    return TraceQuery(**fields)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="microseconds")


def _placed(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans with ``offset_ms`` (and their events' offsets) from the earliest start."""
    origin = min((int(s["start_unix_nano"]) for s in spans), default=0)
    out = []
    for span in spans:
        start = int(span["start_unix_nano"])
        events = [
            {**e, "offset_ms": round((int(e["time_unix_nano"]) - origin) / 1e6, 3)}
            for e in span.get("events") or ()
        ]
        out.append(
            {
                **span,
                "start": _iso(start),
                "offset_ms": round((start - origin) / 1e6, 3),
                "duration_ms": round(float(span["duration_ms"]), 3),
                "events": events,
            }
        )
    return out


class _TraceRoutes:
    def __init__(self, store: TraceStore | None, logs_dir: Path | None) -> None:
        self.store = store
        self.logs_dir = logs_dir

    def _off(self) -> web.Response:
        return error_response(
            404, "trace_store_off", "the local trace store is off (telemetry.trace_store_turns: 0)"
        )

    def _lookup(self, request: web.Request) -> tuple[TraceStore, str] | web.Response:
        """The store and the request's trace id, or the error to answer."""
        trace_id = request.match_info["trace_id"]
        if not _TRACE_ID.fullmatch(trace_id):
            return error_response(400, "invalid_id", "a trace id is 32 lowercase hex digits")
        if self.store is None:
            return self._off()
        return self.store, trace_id

    async def search(self, request: web.Request) -> web.Response:
        try:
            query = parse_query(request.query)
        except ValueError as exc:
            return error_response(400, "bad_request", str(exc))
        if self.store is None:
            return self._off()
        traces = await asyncio.to_thread(self.store.search, query)
        return web.json_response({"traces": traces})

    async def trace(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        store, trace_id = found
        spans, summary = await asyncio.to_thread(
            lambda: (store.spans(trace_id), store.summary(trace_id))
        )
        if spans is None:
            return error_response(404, "unknown_trace", f"no stored turn has trace {trace_id}")
        return web.json_response(
            {"trace_id": trace_id, "summary": summary, "spans": _placed(spans)}
        )

    async def log(self, request: web.Request) -> web.Response:
        found = self._lookup(request)
        if isinstance(found, web.Response):
            return found
        store, trace_id = found
        summary = await asyncio.to_thread(store.summary, trace_id)
        if summary is None:
            return error_response(404, "unknown_trace", f"no stored turn has trace {trace_id}")
        record = await asyncio.to_thread(self._read_log, summary.get("conversation_id"))
        if record is None:
            return error_response(
                404, "no_log", "this turn's conversation log is gone (retention) or was not written"
            )
        return web.json_response(record)

    def _read_log(self, conversation_id: Any) -> dict[str, Any] | None:
        if self.logs_dir is None or not self.logs_dir.is_dir():
            return None
        try:
            ident = validate_id(conversation_id)
        except InvalidIdError:
            return None
        for path in sorted(self.logs_dir.glob(f"pipeline-*-{ident}.json"), reverse=True):
            try:
                return read_log(path)
            except (OSError, ValueError):
                continue
        return None


def add_trace_routes(
    app: web.Application, store: TraceStore | None, *, logs_dir: Path | None = None
) -> None:
    """Mount the trace browser's routes on ``app`` (``store`` None: they say it is off)."""
    routes = _TraceRoutes(store, logs_dir)
    app.router.add_get(PREFIX, routes.search)
    app.router.add_get(PREFIX + "/{trace_id}", routes.trace)
    app.router.add_get(PREFIX + "/{trace_id}/log", routes.log)
