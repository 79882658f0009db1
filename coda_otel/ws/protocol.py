"""The debug WebSocket's wire protocol: envelope, commands and their validation.

Every message either way is one JSON object in a text frame. The server sends envelopes::

    {"type": "pipeline_stage", "id": null, "seq": 7, "ts": "2026-11-25T03:01:02.345+00:00",
     "data": {"stage": "llm", "duration_ms": 412.5, ...}}

``seq`` increases by one per message on each connection; ``id`` echoes the request id of the
command being answered (``null`` for events). A client sends commands::

    {"type": "enable_debugging", "id": "1", "data": {"feature": "cache", "enabled": true}}

and gets ``enable_debugging_result`` (or ``error``) with ``"id": "1"``. Parsing never raises
anything but :class:`ProtocolError`, which carries the error ``code`` the client is sent::

    msg = parse_client_message('{"type": "get_health_status", "id": 3}')
    assert (msg.type, msg.id, msg.data) == ("get_health_status", 3, {})

The JSON Schema of every message is built from these tables in :mod:`coda_otel.ws.schema`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from coda_otel.files import ID_PATTERN, InvalidIdError, validate_id
from coda_otel.sanitize import is_unicode_text

PROTOCOL_VERSION: Final = 1

#: Events the server pushes; a client gets all of them until it sends ``subscribe``.
EVENT_TYPES: Final = (
    "pipeline_stage",
    "conversation_end",
    "stage_stalled",
    "memory_snapshot",
    "cache_stats",
    "health_status",
)
FEATURES: Final = ("tracing", "snapshots", "cache", "all")
ERROR_CODES: Final = (
    "bad_json",  # the frame is not JSON
    "bad_message",  # JSON, but not a message (not an object, bad id, binary frame, ...)
    "unknown_type",  # no such command
    "invalid_params",  # a field is missing, unknown or of the wrong type/value
    "too_large",  # the frame exceeds max_message_bytes
    "rate_limited",  # the client sends faster than its token bucket allows
    "busy",  # too many of this client's commands are still running
    "forbidden",  # e.g. inject_fault while fault injection is disabled
    "unavailable",  # the application wired no handler for this command
    "overloaded",  # the application is at capacity: try again after retry_after_s
    "internal_error",  # the handler failed; the message names the exception class only
)
ErrorCode = Literal[
    "bad_json",
    "bad_message",
    "unknown_type",
    "invalid_params",
    "too_large",
    "rate_limited",
    "busy",
    "forbidden",
    "unavailable",
    "overloaded",
    "internal_error",
]

MAX_TEXT_CHARS: Final = 4000
MAX_ID_CHARS: Final = 128
_NAME = r"^[a-z][a-z0-9_]{0,63}$"
_NAME_RE: Final = re.compile(_NAME)


@dataclass(frozen=True, slots=True)
class Param:
    """One command field: validated by :func:`parse_client_message`, exported to the schema."""

    kind: Literal["string", "boolean", "string_list", "trace_context"]
    required: bool = True
    enum: tuple[str, ...] | None = None
    max_length: int | None = None
    pattern: str | None = None
    safe_id: bool = False  # also checked by coda_otel.files.validate_id, as HTTP checks ids

    def check(self, name: str, value: Any) -> None:
        if self.kind == "trace_context":
            _check_trace_context(name, value)
            return
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise ProtocolError(
                    "invalid_params", f"{name} must be true or false, got {_json_kind(value)}"
                )
            return
        if self.kind == "string_list":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ProtocolError("invalid_params", f"{name} must be a list of strings")
            for v in value:
                self._check_str(name, v)
            return
        if not isinstance(value, str):
            raise ProtocolError(
                "invalid_params", f"{name} must be a string, got {_json_kind(value)}"
            )
        self._check_str(name, value)

    def _check_str(self, name: str, value: str) -> None:
        if not is_unicode_text(value):  # "\ud800" in JSON decodes to a lone surrogate
            raise ProtocolError(
                "invalid_params", f"{name} is not valid Unicode text (lone surrogate)"
            )
        if self.enum is not None and value not in self.enum:
            raise ProtocolError(
                "invalid_params", f"{name} {value[:40]!r} is not one of {', '.join(self.enum)}"
            )
        if self.max_length is not None and len(value) > self.max_length:
            raise ProtocolError(
                "invalid_params",
                f"{name} is {len(value)} characters long; at most {self.max_length} are allowed",
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ProtocolError(
                "invalid_params", f"{name} {value[:40]!r} does not match {self.pattern}"
            )
        if self.safe_id:
            try:
                validate_id(value)
            except InvalidIdError as exc:
                raise ProtocolError("invalid_params", f"{name}: {exc}") from None

    def schema(self) -> dict[str, Any]:
        if self.kind == "trace_context":
            return {
                "type": "object",
                "description": "W3C trace context of the caller: the turn joins its trace",
                "properties": {
                    "traceparent": {"type": "string", "pattern": TRACEPARENT},
                    "tracestate": {"type": "string", "maxLength": TRACE_FIELD_MAX["tracestate"]},
                    "baggage": {"type": "string", "maxLength": TRACE_FIELD_MAX["baggage"]},
                },
                "additionalProperties": False,
            }
        if self.kind == "boolean":
            return {"type": "boolean"}
        text: dict[str, Any] = {"type": "string"}
        if self.enum is not None:
            text["enum"] = list(self.enum)
        if self.max_length is not None:
            text["maxLength"] = self.max_length
        if self.pattern is not None:
            text["pattern"] = self.pattern
        if self.kind == "string_list":
            return {"type": "array", "items": text, "uniqueItems": True}
        return text


#: A W3C ``traceparent`` (version 00 and later: four dash-separated lowercase hex fields).
TRACEPARENT: Final = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_TRACEPARENT_RE: Final = re.compile(TRACEPARENT)
#: The carrier fields a ``trace_context`` object may hold, and their longest accepted value
#: (W3C: tracestate at most 32 members of 256 characters; baggage at most 8192 bytes).
TRACE_FIELD_MAX: Final = {"traceparent": 55, "tracestate": 8192, "baggage": 8192}


def _check_trace_context(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ProtocolError("invalid_params", f"{name} must be an object, got {_json_kind(value)}")
    unknown = set(value) - set(TRACE_FIELD_MAX)
    if unknown:
        raise ProtocolError(
            "invalid_params",
            f"{name} has no field(s) {', '.join(sorted(str(k)[:40] for k in unknown))} "
            f"(carrier fields: {', '.join(TRACE_FIELD_MAX)})",
        )
    for key, item in value.items():
        if not isinstance(item, str) or not is_unicode_text(item):
            raise ProtocolError("invalid_params", f"{name}.{key} must be a string")
        if len(item) > TRACE_FIELD_MAX[key]:
            raise ProtocolError(
                "invalid_params", f"{name}.{key} is longer than {TRACE_FIELD_MAX[key]} characters"
            )
    parent = value.get("traceparent")
    if parent is not None and not _TRACEPARENT_RE.fullmatch(parent):
        raise ProtocolError(
            "invalid_params", f"{name}.traceparent {parent[:60]!r} is not a W3C traceparent"
        )


#: Every command and its fields. Each is answered by ``<command>_result`` or ``error``.
COMMANDS: Final[dict[str, dict[str, Param]]] = {
    "enable_debugging": {"feature": Param("string", enum=FEATURES), "enabled": Param("boolean")},
    "take_memory_snapshot": {
        "user_id": Param("string", required=False, pattern=ID_PATTERN.pattern, safe_id=True),
    },
    "get_cache_stats": {},
    "get_health_status": {},
    "subscribe": {"events": Param("string_list", enum=EVENT_TYPES)},
    "text_input": {
        "text": Param("string", max_length=MAX_TEXT_CHARS),
        "session_id": Param("string", required=False, pattern=ID_PATTERN.pattern, safe_id=True),
        "user_id": Param("string", required=False, pattern=ID_PATTERN.pattern, safe_id=True),
        # the caller's W3C trace context: the turn's spans join the caller's trace
        "trace_context": Param("trace_context", required=False),
    },
    "inject_fault": {
        "component": Param("string", pattern=_NAME),
        "fault": Param("string", pattern=_NAME),
    },
    # re-enable a component the watchdog marked failed (an operator's reset)
    "reset_component": {"component": Param("string", pattern=_NAME)},
    "interrupt": {
        "session_id": Param("string", pattern=ID_PATTERN.pattern, safe_id=True),
    },
}


class ProtocolError(Exception):
    """A message the server must refuse; ``code`` is one of :data:`ERROR_CODES`."""

    def __init__(self, code: ErrorCode, message: str, request_id: str | int | None = None):
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class ClientMessage:
    type: str
    id: str | int | None
    data: dict[str, Any]


def _json_kind(value: Any) -> str:
    for kind, names in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(value, kind):
            return names
    return "null"


def _request_id(raw: dict[str, Any]) -> str | int | None:
    rid = raw.get("id")
    if rid is None or (isinstance(rid, int) and not isinstance(rid, bool)):
        return rid
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid
    raise ProtocolError(
        "bad_message",
        f"id must be a string of at most {MAX_ID_CHARS} "
        f"characters, an integer or null, got {_json_kind(rid)}",
    )


def parse_client_message(text: str) -> ClientMessage:
    """Decode and validate one client frame; raises :class:`ProtocolError` saying what's wrong."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(raw, dict):
        raise ProtocolError(
            "bad_message", f"a message must be a JSON object, got {_json_kind(raw)}"
        )
    rid = _request_id(raw)
    try:
        return _parse_object(raw, rid)
    except ProtocolError as exc:
        exc.request_id = rid
        raise


def _parse_object(raw: dict[str, Any], rid: str | int | None) -> ClientMessage:
    mtype = raw.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError("bad_message", 'a message needs a string "type"')
    extra = set(raw) - {"type", "id", "data", "seq", "ts"}
    if extra:
        raise ProtocolError(
            "bad_message", f"unknown top-level field(s): {', '.join(sorted(k[:40] for k in extra))}"
        )
    params = COMMANDS.get(mtype)
    if params is None:
        raise ProtocolError(
            "unknown_type", f"unknown command {mtype[:40]!r}; commands: {', '.join(COMMANDS)}"
        )
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise ProtocolError("invalid_params", f"data must be an object, got {_json_kind(data)}")
    unknown = set(data) - set(params)
    if unknown:
        raise ProtocolError(
            "invalid_params",
            f"{mtype} has no field(s) {', '.join(sorted(k[:40] for k in unknown))}",
        )
    for name, param in params.items():
        if name in data:
            param.check(name, data[name])
        elif param.required:
            raise ProtocolError("invalid_params", f"{mtype} needs field {name!r}")
    if mtype == "text_input" and not data["text"].strip():
        raise ProtocolError("invalid_params", "text is empty")
    return ClientMessage(mtype, rid, data)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def epoch_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def encode_envelope(mtype: str, rid: str | int | None, seq: int, ts: str, data_json: str) -> str:
    """One server frame; ``data_json`` is the already-encoded data (encoded once per event)."""
    return (
        f'{{"type":{json.dumps(mtype)},"id":{json.dumps(rid)},"seq":{seq},'
        f'"ts":{json.dumps(ts)},"data":{data_json}}}'
    )


def encode_data(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def encode_data_safe(data: Any) -> str:
    """:func:`encode_data`, but NaN/Infinity (not JSON) become null instead of raising."""
    try:
        return encode_data(data)
    except ValueError:
        return encode_data(_finite(data))
