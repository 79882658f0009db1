"""Reading a JSON request body that must be one object, with a clear error for anything else.

    try:
        data = json_object(await request.read())
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))

Invalid UTF-8 or JSON, nesting too deep for the parser, and a non-object each raise
``ValueError`` with a message for people; nothing else escapes.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["json_object"]


def json_object(raw: bytes, what: str = "request body") -> dict[str, Any]:
    """``raw`` parsed as a JSON object; ``ValueError`` naming ``what`` and the problem."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    return data
