"""Every span, event and attribute a real ``coda-lite serve`` emits, as catalogue rows.

    rows = emitted_rows(spans)          # {(span, event, attribute, type), ...}
    documented_rows(Path("docs/telemetry.md"))   # {(span, event, attribute, type): source}

A span is named as the table names it: the inference span by its pattern
``{gen_ai.operation.name} {gen_ai.request.model}``; an attribute of the span itself has the
event ``-``. Types are the OTLP value kinds: ``string``, ``int``, ``double``, ``bool`` and
``string[]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str]

SOURCES = ("stable", "development", "coda")
INFERENCE = "{gen_ai.operation.name} {gen_ai.request.model}"


def _kind(value: Any) -> str:
    which = value.WhichOneof("value")
    if which == "array_value":
        inner = {v.WhichOneof("value") for v in value.array_value.values}
        return "string[]" if inner <= {"string_value"} else "array"
    return {"string_value": "string", "int_value": "int", "double_value": "double",
            "bool_value": "bool"}.get(which or "", which or "empty")  # fmt: skip


def _span_name(span: Any) -> str:
    attrs = {kv.key: kv.value.string_value for kv in span.attributes}
    op, model = attrs.get("gen_ai.operation.name"), attrs.get("gen_ai.request.model")
    if op and model and span.name == f"{op} {model}":
        return INFERENCE
    return str(span.name)


def emitted_rows(spans: Iterable[Any]) -> set[Row]:
    rows: set[Row] = set()
    for span in spans:
        name = _span_name(span)
        for kv in span.attributes:
            rows.add((name, "-", kv.key, _kind(kv.value)))
        for event in span.events:
            rows.add((name, event.name, "-", "-"))
            for kv in event.attributes:
                rows.add((name, event.name, kv.key, _kind(kv.value)))
    return rows


_CELL = r"\s*`?([^|`]+?)`?\s*\|"
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|" + _CELL * 3 + r"\s*([\w-]+)\s*\|")


def documented_rows(path: Path) -> dict[Row, str]:
    """The table's rows (span, event, attribute, type) and each one's source."""
    out: dict[Row, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            span, event, attr, kind, source = (g.strip() for g in m.groups())
            out[(span, event, attr, kind)] = source
    return out


def source_of(attribute: str) -> str:
    """Where an attribute name comes from (the rule the table follows)."""
    if attribute.startswith("coda."):
        return "coda"
    if attribute.startswith("gen_ai.") or attribute == "session.id":
        return "development"
    return "stable"


def table(rows: Iterable[Row]) -> str:
    """The markdown table for ``rows`` (what the doc should hold when it drifted)."""
    lines = ["| span | event | attribute | type | source |", "|---|---|---|---|---|"]
    for span, event, attr, kind in sorted(rows):
        src = "-" if attr == "-" else source_of(attr)
        ev = "-" if event == "-" else f"`{event}`"
        at = "-" if attr == "-" else f"`{attr}`"
        lines.append(f"| `{span}` | {ev} | {at} | {kind} | {src} |")
    return "\n".join(lines)
