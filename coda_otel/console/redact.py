"""Conversation content in a snapshot diff, made fit for a web page.

Snapshot files hold memories and turns verbatim; the page shows them the way spans do: a
redacted preview by default, the redacted (truncated) text when content capture is on::

    from coda_otel.console.redact import redact_diff

    safe = redact_diff(diff_snapshots(a, b), Sanitizer.from_env())
    safe["new_memories"][0]["content"]   # 'my email is [EMAIL]'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coda_otel.sanitize import Sanitizer

#: Fields of a memory or a turn that hold what somebody said.
CONTENT_FIELDS = frozenset({"content", "text", "transcript", "response"})
_LISTS = ("new_memories", "removed_memories", "new_turns")


def _text(value: Any, sanitizer: Sanitizer) -> Any:
    if not isinstance(value, str):
        return value
    return sanitizer.text(value) if sanitizer.capture_content else sanitizer.preview(value)


def _record(record: Any, sanitizer: Sanitizer) -> Any:
    if not isinstance(record, Mapping):
        return _text(record, sanitizer)
    return {k: _text(v, sanitizer) if k in CONTENT_FIELDS else v for k, v in record.items()}


def _changed(entry: Any, sanitizer: Sanitizer) -> Any:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("changes"), Mapping):
        return entry
    changes = {
        name: {k: _text(v, sanitizer) for k, v in change.items()}
        if name in CONTENT_FIELDS and isinstance(change, Mapping)
        else change
        for name, change in entry["changes"].items()
    }
    return {**entry, "changes": changes}


def redact_diff(diff: Mapping[str, Any], sanitizer: Sanitizer) -> dict[str, Any]:
    """A copy of ``diff`` whose memory and turn content went through ``sanitizer``."""
    out = dict(diff)
    for key in _LISTS:
        out[key] = [_record(r, sanitizer) for r in diff.get(key) or ()]
    out["changed_memories"] = [_changed(c, sanitizer) for c in diff.get("changed_memories") or ()]
    out["content"] = "full (redacted)" if sanitizer.capture_content else "preview (redacted)"
    return out
