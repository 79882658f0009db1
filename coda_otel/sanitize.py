"""Make conversation content safe to log or put on a span: redact, truncate, summarise.

Conversation content is sensitive, so the defaults are strict: secrets and personal data are
redacted, text is truncated, and full content is kept only when content capture is switched on
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` or ``CODA_CAPTURE_CONTENT=true``)::

    from coda_otel.sanitize import Sanitizer

    s = Sanitizer()                              # max_length=1000, redact=True, capture off
    s.text("mail bob@example.com, card 4111 1111 1111 1111")
    # 'mail [EMAIL], card [CARD]'
    s.summarize({"transcript": "call me at +44 20 7946 0958", "audio_bytes": b"..."})
    # {'transcript': {'type': 'str', 'size': 27, 'preview': 'call me at [PHONE]'},
    #  'audio_bytes': {'type': 'bytes', 'size': 3}}
    s = Sanitizer.from_env()                     # honours the capture/redaction variables
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from coda_otel import env

CAPTURE_ENV_VARS: tuple[str, ...] = (
    env.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT,
    env.CODA_CAPTURE_CONTENT,
)
REDACT_ENV_VAR = env.CODA_REDACT
TRUNCATION_MARK = "... [truncated]"

# Every pattern runs in linear time: a match can only start where its run of characters starts
# (a look-behind rejects every later position at once) and runs are taken possessively, so no
# position is rescanned; letter+digit checks happen in the replacement functions instead.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_BEARER = re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]++=*")
# A key (bare or quoted, as in JSON) followed by ':' or '='; whether the key names a secret is
# decided by _secret_key, the value is matched by _VALUE right after the separator.
_KEY_SEPARATOR = re.compile(r"(?<![\w.-])([\"']?)([\w.-]++)\1\s*+[:=]\s*+")
_VALUE = re.compile(r"\"[^\"\n]*+\"|'[^'\n]*+'|\S++")
_KEY_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "pwd", "token", "apikey", "accesstoken", "authtoken",
     "secretkey", "privatekey", "credential", "credentials", "passphrase"}
)  # fmt: skip
_KEY_QUALIFIERS = frozenset({"api", "access", "secret", "private", "signing", "encryption"})
_MAX_KEY_LENGTH = 100
_KNOWN_KEYS = re.compile(
    r"(?<![\w-])(?:sk-[A-Za-z0-9_-]{16,}+|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}+"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}+|AIza[0-9A-Za-z_-]{35})"
)
# Runs of 32+ token characters; _opaque redacts those mixing letters and digits, except ids:
# hex strings (memory ids, trace ids, digests) and UUIDs are not secrets by their shape (a
# secret in hex is still caught by its context: ``api_key=<hex>``).
_HEX_ID = re.compile(
    r"[0-9a-f]{32,}|[0-9A-F]{32,}"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_TOKEN_RUN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}+")
_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]?\d{2,4}){1,3}(?!\w)"
)


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (only 0-9) passes the Luhn checksum used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    if _DATE.fullmatch(found):
        return found
    digits = sum(ch.isdigit() for ch in found)
    return "[PHONE]" if 7 <= digits <= 15 else found


def secret_key(name: str) -> bool:
    """True when a key name says its value is a secret (``OPENAI_API_KEY``, ``apiKey``, ...).

    The name is split into words (``_``, ``-``, ``.`` and camelCase); a secret word
    (``password``, ``token``, ``secret``...) or ``key`` after ``api``/``access``/``secret``...
    marks it. Counts such as ``max_tokens`` or ``input_tokens`` are not secrets.
    """
    if len(name) > _MAX_KEY_LENGTH:
        return False
    words = [w.lower() for w in _KEY_WORDS.findall(name)]
    for i, word in enumerate(words):
        if word in _SECRET_WORDS:
            return True
        if word == "key" and i and words[i - 1] in _KEY_QUALIFIERS:
            return True
    return False


def _redact_key_values(text: str) -> str:
    parts: list[str] = []
    done = 0
    for match in _KEY_SEPARATOR.finditer(text):
        if match.start() < done or not secret_key(match.group(2)):
            continue  # inside a value already redacted, or not a secret's key
        value = _VALUE.match(text, match.end())
        if value is None:
            continue
        parts.append(text[done : match.end()])
        parts.append("[SECRET]")
        done = value.end()
    if not parts:
        return text
    parts.append(text[done:])
    return "".join(parts)


def _opaque(match: re.Match[str]) -> str:
    token = match.group(0)
    core = token.strip("-")
    if _HEX_ID.fullmatch(core):
        return token  # an id, not a key
    if any(ch.isdigit() for ch in core) and any(ch.isalpha() for ch in core):
        lead = len(token) - len(token.lstrip("-"))
        return f"{token[:lead]}[API_KEY]{token[lead + len(core) :]}"
    return token


#: Unicode format characters (category Cf) that render as nothing but split what a pattern
#: must see whole, and the soft hyphen: removed before redacting.
_INVISIBLE = {
    cp: None
    for cp in (0x00AD, 0x034F, 0x061C, 0x180E, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF,
               *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}  # fmt: skip


def redact(text: str) -> str:
    """Replace e-mails, bearer tokens, API keys, card numbers (Luhn) and phone numbers.

    Linear in ``len(text)`` for any input (no pattern rescans from every position).
    Invisible format characters (zero-width spaces and joiners, soft hyphens, bidi marks) are
    removed first: ``ada\u200b@example.com`` reads as an address and is one.
    """
    if not text.isascii():
        text = text.translate(_INVISIBLE)
    text = _BEARER.sub("Bearer [TOKEN]", text)
    text = _redact_key_values(text)
    text = _KNOWN_KEYS.sub("[API_KEY]", text)
    text = _EMAIL.sub("[EMAIL]", text)
    text = _TOKEN_RUN.sub(_opaque, text)
    text = _CARD_CANDIDATE.sub(_card, text)
    return _PHONE.sub(_phone, text)


def is_unicode_text(text: str) -> bool:
    """False when ``text`` holds a lone surrogate (JSON may escape one: ``"\\ud800"``).

    >>> is_unicode_text("café"), is_unicode_text("a" + chr(0xD800))
    (True, False)
    """
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def size_of(value: Any, _depth: int = 0) -> int:
    """A cheap content size: characters of text, bytes of binary, summed over containers.

    >>> size_of({"query": "hello", "context": [{"content": "abc", "score": 0.5}]})
    11
    """
    kind = type(value)  # exact-type fast paths first: this runs twice per stage, on the hot path
    if kind is str or kind is bytes:
        return len(value)
    if kind is dict or kind is list or kind is tuple:
        if _depth >= 4:
            return 0
        total = 0
        for item in value.values() if kind is dict else value:
            item_kind = type(item)  # leaves inline: one call per container, not per value
            if item_kind is str or item_kind is bytes:
                total += len(item)
            elif item_kind is float or item_kind is int:
                total += len(repr(item))
            elif item is not None:
                total += size_of(item, _depth + 1)
        return total
    if kind is float or kind is int:
        return len(repr(value))
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return len(repr(value))
    if _depth >= 4:
        return 0
    if isinstance(value, Mapping):
        return sum(size_of(v, _depth + 1) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return sum(size_of(v, _depth + 1) for v in value)
    return len(str(value))


class Sanitizer:
    """Redaction, truncation and summaries with one policy (thread-safe, no state per call).

    ``max_length`` bounds any text kept; ``preview_length`` bounds previews in summaries;
    ``capture_content`` decides whether full (still redacted, truncated) content may be kept.
    """

    def __init__(
        self,
        max_length: int = 1000,
        redact: bool = True,
        capture_content: bool = False,
        *,
        preview_length: int = 80,
        max_items: int = 20,
    ) -> None:
        if max_length < 1 or preview_length < 1 or max_items < 1:
            raise ValueError("max_length, preview_length and max_items must be positive")
        self.max_length = max_length
        self.redact = redact
        self.capture_content = capture_content
        self.preview_length = preview_length
        self.max_items = max_items

    @classmethod
    def from_env(cls, max_length: int = 1000, *, capture_content: bool = False) -> Sanitizer:
        """The one policy every writer shares: capture on when ``capture_content`` (a
        configuration's own switch) or either capture variable is true; redaction off only by
        CODA_REDACT."""
        capture = capture_content or any(env.flag(name, False) for name in CAPTURE_ENV_VARS)
        return cls(max_length, redact=env.flag(REDACT_ENV_VAR, True), capture_content=capture)

    def text(self, value: str, limit: int | None = None) -> str:
        """Redact (when on) then truncate to ``limit`` (default ``max_length``) characters."""
        limit = self.max_length if limit is None else limit
        # Redact a little beyond the cut so a secret straddling it is still caught.
        head = value[: limit + 64] if len(value) > limit + 64 else value
        if self.redact:
            head = redact(head)
        if len(value) > limit or len(head) > limit:
            return head[:limit] + TRUNCATION_MARK
        return head

    def value(self, data: Any, _depth: int = 0) -> Any:
        """A JSON-able, redacted, truncated copy of ``data`` (dicts, lists, text, numbers)."""
        if isinstance(data, str):
            return self.text(data)
        if data is None or isinstance(data, bool | int | float):
            return data
        if isinstance(data, bytes | bytearray | memoryview):
            return f"<{size_of(data)} bytes>"
        if _depth >= 4:
            return f"<{type(data).__name__}>"
        if isinstance(data, Mapping):
            items = list(data.items())
            out = {str(k): self.value(v, _depth + 1) for k, v in items[: self.max_items]}
            if len(items) > self.max_items:
                out["..."] = f"{len(items) - self.max_items} more keys"
            return out
        if isinstance(data, list | tuple | set | frozenset):
            seq = list(data)
            kept = [self.value(v, _depth + 1) for v in seq[: self.max_items]]
            if len(seq) > self.max_items:
                kept.append(f"... {len(seq) - self.max_items} more items")
            return kept
        return self.text(str(data))

    def content(self, data: Any) -> Any:
        """Full (sanitised) content when capture is on, else the summary."""
        return self.value(data) if self.capture_content else self.summarize(data)

    def preview(self, data: Any) -> str:
        """One short redacted line describing ``data`` (used for span previews)."""
        if isinstance(data, str):
            return self.text(data, self.preview_length)
        return self.text(str(self.value(data)), self.preview_length)

    def summarize(self, data: Any) -> dict[str, Any]:
        """Sizes and short redacted previews, per key for a mapping (what logs keep)."""
        if isinstance(data, Mapping):
            items = list(data.items())
            out = {str(k): self._describe(v) for k, v in items[: self.max_items]}
            if len(items) > self.max_items:
                out["..."] = {"type": "more", "size": len(items) - self.max_items}
            return out
        return {"value": self._describe(data)}

    def _describe(self, value: Any) -> dict[str, Any]:
        kind = type(value).__name__
        if isinstance(value, bytes | bytearray | memoryview):
            return {"type": "bytes", "size": size_of(value)}
        if value is None or isinstance(value, bool | int | float):
            return {"type": kind, "value": value}
        entry: dict[str, Any] = {"type": kind, "size": size_of(value)}
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            entry["items"] = len(value)
        entry["preview"] = self.preview(value)
        return entry
