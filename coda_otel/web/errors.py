"""The one error shape of every HTTP answer coda-otel and the service give.

    from coda_otel.web.errors import error_response

    return error_response(404, "unknown_component", "unknown component 'x'", components=["llm"])
    # -> 404 {"error": {"code": "unknown_component", "message": "...", "components": ["llm"]}}

``code`` is a short machine-readable word (snake_case), ``message`` a sentence for people;
extra keys add detail inside the ``error`` object, never beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON object of an error: ``{"error": {"code": ..., "message": ..., **extra}}``."""
    return {"error": {"code": code, "message": message, **extra}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """A JSON error response with ``status`` and the one error shape."""
    return web.json_response(error_body(code, message, **extra), status=status, headers=headers)
