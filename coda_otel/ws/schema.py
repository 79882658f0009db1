"""The published JSON Schema (draft 2020-12) of the debug WebSocket protocol.

Built from the tables in :mod:`coda_otel.ws.protocol`, so the code is the single source; the
file ``coda_otel/ws/schemas/ws-messages.json`` is this module's output, and a test keeps both in
step. Regenerate it with ``python -m coda_otel.ws.schema > coda_otel/ws/schemas/ws-messages.json``.
Validate a message (with the ``jsonschema`` package, a dev dependency)::

    import jsonschema
    from coda_otel.ws.schema import validator_for
    validator_for("server_message").validate(frame_as_dict)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Final

from coda_otel.ws.protocol import (
    COMMANDS,
    ERROR_CODES,
    EVENT_TYPES,
    MAX_ID_CHARS,
    PROTOCOL_VERSION,
    Param,
)

SCHEMA_PATH: Final = Path(__file__).parent / "schemas" / "ws-messages.json"


_NULLABLE_STR: Final = {"type": ["string", "null"]}
_HEX32: Final = {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$"}
_HEX16: Final = {"type": ["string", "null"], "pattern": "^[0-9a-f]{16}$"}
_COUNT: Final = {"type": "integer", "minimum": 0}
_MS: Final = {"type": "number", "minimum": 0}
_STATUS: Final = {"enum": ["ok", "error", "cancelled"]}
_TIME: Final = {
    "type": "string",
    "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
}


def _obj(
    props: dict[str, Any], required: list[str] | None = None, *, extra: bool = False
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


_US: Final = {"type": "integer", "minimum": 0}
_NULLABLE_US: Final = {"type": ["integer", "null"], "minimum": 0}
#: A turn's measures (microseconds); the breakdown's parts add up to voice_to_voice_us.
_LATENCY: Final = {
    **_obj(
        {
            "voice_to_voice_us": _US,
            "time_to_first_audio_us": _US,
            "time_to_first_token_us": _NULLABLE_US,
            "output_tokens_per_second": {"type": ["number", "null"], "minimum": 0},
            "output_tokens": _COUNT,
            "streamed": {"type": "boolean"},
            "breakdown_us": {"type": "object", "additionalProperties": _US},
        },
        ["voice_to_voice_us", "breakdown_us"],
        extra=True,
    ),
    "type": ["object", "null"],
}
_END_REASON: Final = {"enum": ["completed", "error", "interrupted", "cancelled"]}
#: Who interrupted a turn and how much of its answer had been generated and spoken.
_INTERRUPTION: Final = {
    **_obj(
        {
            "interrupted_by": {"type": "string"},
            "generated_chars": _COUNT,
            "generated_sentences": _COUNT,
            "spoken_sentences": _COUNT,
            "spoken_chars": _COUNT,
        },
        ["interrupted_by"],
        extra=True,
    ),
    "type": ["object", "null"],
}
_STALL_BRIEF = _obj({"stage": {"type": "string"}, "idle_ms": _MS})
_STAGE_BRIEF = _obj({"stage": {"type": "string"}, "status": _STATUS, "duration_ms": _MS})
#: Every ``conversation_end`` field but ``latency`` (null or absent when nothing was spoken).
_CONVERSATION_END_REQUIRED: Final = [
    "conversation_id", "session_id", "turn", "status", "started_at", "duration_ms", "trace_id",
    "span_id", "stages",
]  # fmt: skip
#: The ``data`` of every message the server sends, by type.
SERVER_DATA: Final[dict[str, dict[str, Any]]] = {
    "hello": _obj(
        {
            "protocol": {"const": PROTOCOL_VERSION},
            "events": {"type": "array", "items": {"enum": list(EVENT_TYPES)}},
            "commands": {"type": "array", "items": {"enum": list(COMMANDS)}},
            "subscribed": {"type": "array", "items": {"enum": list(EVENT_TYPES)}},
            "max_message_bytes": _COUNT,
        }
    ),
    "pipeline_stage": _obj(
        {
            "conversation_id": {"type": "string"},
            "session_id": _NULLABLE_STR,
            "turn": _COUNT,
            "stage": {"type": "string"},
            "status": _STATUS,
            "started_at": _TIME,
            "duration_ms": _MS,
            "input_size": _COUNT,
            "output_size": _COUNT,
            "trace_id": _HEX32,
            "span_id": _HEX16,
            "error_type": _NULLABLE_STR,
        }
    ),
    "conversation_end": _obj(
        {
            "conversation_id": {"type": "string"},
            "session_id": _NULLABLE_STR,
            "turn": _COUNT,
            "status": _STATUS,
            "started_at": _TIME,
            "duration_ms": _MS,
            "trace_id": _HEX32,
            "span_id": _HEX16,
            "stages": {"type": "array", "items": _STAGE_BRIEF},
            "latency": _LATENCY,
            "end_reason": _END_REASON,
            "interruption": _INTERRUPTION,
            "stalls": {"type": "array", "items": _STALL_BRIEF},
        },
        _CONVERSATION_END_REQUIRED,
    ),
    "stage_stalled": _obj(
        {
            "conversation_id": {"type": "string"},
            "session_id": _NULLABLE_STR,
            "turn": _COUNT,
            "stage": {"type": "string"},
            "budget_ms": _MS,
            "idle_ms": _MS,
            "running_ms": _MS,
            "trace_id": _HEX32,
            "span_id": _HEX16,
        }
    ),
    "memory_snapshot": _obj(
        {"snapshot_id": {"type": "string"}, "trigger": {"type": "string"}},
        ["snapshot_id"],
        extra=True,
    ),
    "cache_stats": _obj(
        {"stats": {"type": "object"}, "recommendations": {"type": "array"}}, extra=True
    ),
    "health_status": _obj(
        {"overall_health": {"type": "string"}, "components": {"type": "object"}}, extra=True
    ),
    "error": _obj({"code": {"enum": list(ERROR_CODES)}, "message": {"type": "string"}}),
}
_RESULT_DATA: Final[dict[str, dict[str, Any]]] = {
    "subscribe": _obj({"events": {"type": "array", "items": {"enum": list(EVENT_TYPES)}}}),
    "get_cache_stats": SERVER_DATA["cache_stats"],
    "get_health_status": SERVER_DATA["health_status"],
    "reset_component": _obj(
        {"component": {"type": "string"}, "status": {"type": "string"}}, extra=True
    ),
    "interrupt": _obj(
        {
            "session_id": {"type": "string"},
            "interrupted": {"type": "boolean"},
            "conversation_id": _NULLABLE_STR,
        }
    ),
}
for _cmd in COMMANDS:
    SERVER_DATA[f"{_cmd}_result"] = _RESULT_DATA.get(_cmd, {"type": "object"})


def _command_schema(name: str, params: dict[str, Param]) -> dict[str, Any]:
    data = _obj(
        {k: p.schema() for k, p in params.items()}, [k for k, p in params.items() if p.required]
    )
    msg = _obj(
        {
            "type": {"const": name},
            "id": {"$ref": "#/$defs/request_id"},
            "data": data,
            "seq": {"type": "integer"},
            "ts": {"type": "string"},
        },
        ["type"],
    )
    if not any(p.required for p in params.values()):
        return msg
    msg["required"] = ["type", "data"]
    return msg


def build_schema() -> dict[str, Any]:
    """The JSON Schema of every message; ``#/$defs/server_message`` and ``client_message``."""
    defs: dict[str, Any] = {
        "request_id": {
            "anyOf": [
                {"type": "string", "maxLength": MAX_ID_CHARS},
                {"type": "integer"},
                {"type": "null"},
            ]
        },
    }
    for name, params in COMMANDS.items():
        defs[f"command_{name}"] = _command_schema(name, params)
    for mtype, data in SERVER_DATA.items():
        defs[f"message_{mtype}"] = _obj(
            {
                "type": {"const": mtype},
                "id": {"$ref": "#/$defs/request_id"},
                "seq": {"type": "integer", "minimum": 1},
                "ts": _TIME,
                "data": data,
            }
        )
    defs["client_message"] = {"oneOf": [{"$ref": f"#/$defs/command_{n}"} for n in COMMANDS]}
    defs["server_message"] = {"oneOf": [{"$ref": f"#/$defs/message_{t}"} for t in SERVER_DATA]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"Coda debug WebSocket protocol v{PROTOCOL_VERSION}",
        "description": "Messages on /ws. Server messages are envelopes {type, id, seq, ts, "
        "data}; client messages are commands {type, id?, data?}. See docs/websocket.md.",
        "anyOf": [{"$ref": "#/$defs/client_message"}, {"$ref": "#/$defs/server_message"}],
        "$defs": defs,
    }


def schema_json() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The published schema file (what clients and the tests use)."""
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def validator_for(definition: str, schema: dict[str, Any] | None = None) -> Any:
    """A ``jsonschema`` validator for ``#/$defs/<definition>`` (needs the ``jsonschema`` extra)."""
    import jsonschema

    root = schema if schema is not None else load_schema()
    sub = {**root, "$ref": f"#/$defs/{definition}"}
    sub.pop("anyOf", None)
    cls = jsonschema.validators.validator_for(root)
    return cls(sub, format_checker=cls.FORMAT_CHECKER)


if __name__ == "__main__":
    sys.stdout.write(schema_json())
