"""Who may talk to the debug service: tokens, origins, and the DNS-rebinding guard.

The rules, for every route except the read-only ones (``/metrics``, ``/health*``):

* with a token configured, a request must carry ``Authorization: Bearer <token>``
  (compared in constant time);
* without one, the service only binds loopback (:func:`check_bind_security`), and a request
  whose ``Host`` is not a loopback name is refused: a web page that rebinds its own domain to
  127.0.0.1 still sends its own name as ``Host``;
* a ``Host`` is one host name or address and an optional port, nothing else (no user info,
  path or list: ``evil.example@127.0.0.1``, ``127.0.0.1/evil`` and ``a, b`` are refused);
* a browser ``Origin`` must be the service's own (same scheme, host and port) or listed in
  ``allowed_origins``;
* a ``POST`` must be ``application/json``, which a page cannot send cross-origin without a
  CORS preflight this service never grants.

    app = web.Application(middlewares=[debug_security(token=token, open_paths={"/metrics"})])
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from coda_otel.web.errors import error_response

MIN_TOKEN_CHARS = 16
#: Routes readable (GET/HEAD) without a token by default: scrapes and probes.
OPEN_PATHS: tuple[str, ...] = ("/metrics", "/health", "/health/live", "/health/ready")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InsecureBindError(ValueError):
    """The service was asked to expose the debug API without the protection it needs."""


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1; False for wildcards and other names."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_token(token: str | None) -> None:
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise InsecureBindError(
            f"CODA_DEBUG_TOKEN is {len(token)} characters long; use at least {MIN_TOKEN_CHARS} "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def check_bind_security(host: str | Iterable[str] | None, token: str | None) -> None:
    """Raise :class:`InsecureBindError` (saying how to fix it) unless binding is safe.

    Safe: every host is loopback, or a token of at least 16 characters is configured.
    ``None`` or ``""`` means all interfaces, which is not loopback.
    """
    token = token or None
    check_token(token)
    hosts = [host] if isinstance(host, str) or host is None else list(host)
    exposed = [h for h in hosts if not h or not is_loopback(h)]
    if (exposed or not hosts) and token is None:
        where = ", ".join(repr(h or "0.0.0.0") for h in exposed) or "all interfaces"
        raise InsecureBindError(
            f"refusing to serve the debug API on {where} without a token: anyone who can "
            "reach it could read pipeline events and run turns. Set CODA_DEBUG_TOKEN "
            "(server.debug_token) to a secret of 16+ characters, or bind 127.0.0.1."
        )


#: A Host header: a name or IPv4 address, or a bracketed IPv6 address, and an optional port.
_HOST = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?$")


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a well-formed Host value (RFC 9110), else None."""
    match = _HOST.fullmatch(value.strip())
    if match is None:
        return None
    port = match.group("port")
    return match.group("host").lower(), None if port is None else int(port)


def host_header_is_loopback(request: web.Request) -> bool:
    """True when the request names a loopback host (or, from a non-browser, no host at all)."""
    values = request.headers.getall("Host", [])
    if not values:
        return True
    parsed = parse_host(values[0]) if len(values) == 1 else None
    return parsed is not None and is_loopback(parsed[0])


def bearer_ok(request: web.Request, token: bytes, *, allow_query: bool = False) -> bool:
    """True when the request carries the token (header; also ``?token=`` if allowed)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    supplied = value.strip() if scheme.lower() == "bearer" else None
    if supplied is None and allow_query:
        supplied = request.query.get("token")
    if not supplied:
        return False
    return hmac.compare_digest(supplied.encode("utf-8"), token)


#: The subprotocol a browser client asks for; the server echoes it when offered.
SUBPROTOCOL = "coda-debug"
#: A browser sends its token as the subprotocol ``coda-token.<base64url(utf-8 token)>``: the
#: WebSocket API cannot set ``Authorization``, and a header stays out of URLs and access logs.
TOKEN_SUBPROTOCOL_PREFIX = "coda-token."


def subprotocol_token(request: web.Request) -> bytes | None:
    """The token a client offered in ``Sec-WebSocket-Protocol``, decoded; None if none."""
    for offered in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        offered = offered.strip()
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            encoded = offered[len(TOKEN_SUBPROTOCOL_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            except (binascii.Error, ValueError):
                return None
    return None


def origin_allowed(request: web.Request, allowed: set[str]) -> bool:
    """No ``Origin`` (not a browser), the service's own, or one of ``allowed`` (normalised).

    The service's own origin has its scheme, host and port: ``https://127.0.0.1:8765`` is not
    the origin of ``http://127.0.0.1:8765``.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    normalised = origin.strip().rstrip("/").lower()
    if normalised in allowed:
        return True
    parts = urlsplit(normalised)
    own = parse_host(request.host)
    theirs = parse_host(parts.netloc) if parts.netloc else None
    if own is None or theirs is None or parts.scheme != request.scheme:
        return False
    if parts.path or parts.query or parts.fragment:
        return False
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (theirs[0], theirs[1] or default) == (own[0], own[1] or default)


def normalise_origins(origins: Iterable[str]) -> set[str]:
    return {o.strip().rstrip("/").lower() for o in origins}


def _deny(status: int, code: str, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="coda-debug"'} if status == 401 else None
    return error_response(status, code, message, headers=headers)


def debug_security(
    *,
    token: str | None,
    allowed_origins: Iterable[str] = (),
    open_paths: Iterable[str] = OPEN_PATHS,
    self_authenticating: Iterable[str] = ("/ws",),
) -> Middleware:
    """An aiohttp middleware applying the module's rules.

    ``open_paths`` are readable (GET/HEAD) without a token; ``self_authenticating`` routes
    check the token themselves (the WebSocket also accepts ``?token=``).
    """
    check_token(token or None)
    secret = token.encode("utf-8") if token else None
    origins = normalise_origins(allowed_origins)
    public, own_auth = frozenset(open_paths), frozenset(self_authenticating)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if secret is None and not host_header_is_loopback(request):
            return _deny(403, "forbidden_host", "this service answers only to a loopback Host")
        if not origin_allowed(request, origins):
            return _deny(403, "forbidden_origin", f"origin {request.headers['Origin']!r}")
        readable = request.method in ("GET", "HEAD") and request.path in public
        needs_token = secret is not None and not readable and request.path not in own_auth
        if needs_token and not bearer_ok(request, secret or b""):
            return _deny(401, "unauthorized", "Authorization: Bearer <CODA_DEBUG_TOKEN>")
        if request.method == "POST" and request.content_type != "application/json":
            return _deny(415, "unsupported_media_type", "send Content-Type: application/json")
        return await handler(request)

    return middleware
