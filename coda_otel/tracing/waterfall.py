"""A conversation as a terminal waterfall: one bar per stage, to scale.

Reads either a JSON conversation log or the OTLP JSON-lines traces file::

    from coda_otel.tracing.waterfall import load, render

    print(render(load(Path("pipeline-....json"))))
    print(render(load(Path("~/.coda/traces/traces.jsonl").expanduser())))   # the last trace
                                                  # (+ a bar per synthesized sentence)

    conversation 7da626de  trace f02ca3db…  ok  total 1234.5 ms
      stt               |██████                                            |  150.2 ms
      memory_retrieval  |      █                                           |   20.1 ms
      llm               |       ██████████████████████████████████         |  801.0 ms

An interrupted turn says so in its header (``cancelled  INTERRUPTED by new_turn (spoken 12 of
80 characters)``) and a stage that outlived its stall budget ends its line with ``STALLED``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from coda_otel.pipeline.conversation_log import read_log
from coda_otel.tracing.file_exporter import read_otlp_json_lines

_ERROR_CODE = 2  # opentelemetry.proto.trace.v1.Status.STATUS_CODE_ERROR
_INTERRUPTION = ("interrupted_by", "generated_chars", "spoken_chars", "spoken_sentences")


def end_note(wf: Waterfall) -> str:
    """``INTERRUPTED by new_turn (spoken 12 of 80 characters)``; empty for a completed turn."""
    if wf.end_reason in ("completed", wf.status):
        return ""
    note = f"  {wf.end_reason.upper()}"
    info = wf.interruption or {}
    if info.get("interrupted_by"):
        note += f" by {info['interrupted_by']}"
    if "spoken_chars" in info and "generated_chars" in info:
        note += f" (spoken {info['spoken_chars']} of {info['generated_chars']} characters)"
    return note


@dataclass(frozen=True)
class Bar:
    name: str
    offset_ms: float
    duration_ms: float
    status: str = "ok"
    depth: int = 0
    note: str = ""
    stalled: bool = False  # ran past its stall budget without progress


@dataclass(frozen=True)
class Waterfall:
    conversation_id: str
    total_ms: float
    status: str = "ok"
    trace_id: str | None = None
    bars: list[Bar] = field(default_factory=list)
    latency: Mapping[str, Any] | None = None  # the turn's measures (see latency_lines)
    end_reason: str = "completed"
    interruption: Mapping[str, Any] | None = None  # who interrupted, how much was spoken


def _epoch(stage: Mapping[str, Any]) -> float:
    if isinstance(stage.get("started_at"), int | float):
        return float(stage["started_at"])
    try:
        return datetime.fromisoformat(str(stage["timestamp"])).timestamp()
    except (KeyError, ValueError) as exc:
        raise ValueError(f"stage {stage.get('stage_name')!r} has no usable start time") from exc


def from_log(record: Mapping[str, Any]) -> Waterfall:
    """Bars from a conversation log's stages (the ``error`` records become notes)."""
    stages = [s for s in record.get("stages", []) if s.get("stage_name") != "error"]
    starts = [_epoch(s) for s in stages]
    origin = record.get("started_at")
    origin = float(origin) if isinstance(origin, int | float) else min(starts, default=0.0)
    bars = []
    for stage, start in zip(stages, starts, strict=True):
        note = str(stage.get("error_type") or "")
        bars.append(
            Bar(
                str(stage.get("stage_name")),
                max(0.0, (start - origin) * 1000),
                float(stage.get("duration_ms") or 0.0),
                str(stage.get("status") or "ok"),
                note=note,
                stalled=bool((stage.get("metadata") or {}).get("stalls")),
            )
        )
    ends = [b.offset_ms + b.duration_ms for b in bars]
    total = max([float(record.get("total_duration_ms") or 0.0), *ends, 0.0])
    latency = record.get("latency")
    return Waterfall(
        str(record.get("conversation_id")),
        total,
        str(record.get("status") or "ok"),
        record.get("trace_id"),
        bars,
        latency if isinstance(latency, Mapping) else None,
        str(record.get("end_reason") or "completed"),
        record.get("interruption") if isinstance(record.get("interruption"), Mapping) else None,
    )


def _attr(span: Mapping[str, Any], key: str) -> Any:
    for item in span.get("attributes", []):
        if item.get("key") == key:
            value = item.get("value", {})
            return next(iter(value.values()), None) if value else None
    return None


def _spans(requests: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [
        span
        for request in requests
        for resource in request.get("resourceSpans", [])
        for scope in resource.get("scopeSpans", [])
        for span in scope.get("spans", [])
    ]


def from_otlp(requests: Iterable[Mapping[str, Any]], trace_id: str | None = None) -> Waterfall:
    """Bars from OTLP/JSON requests: the trace ``trace_id``, or the last conversation written."""
    spans = _spans(requests)
    if trace_id is None:
        # a turn's root may sit under the request's SERVER span or a caller's span
        roots = [s for s in spans if s.get("name") == "conversation"]
        if not roots:
            raise ValueError("no conversation trace found in the traces file")
        trace_id = str(max(roots, key=lambda s: int(s["endTimeUnixNano"]))["traceId"])
    mine = [s for s in spans if s.get("traceId") == trace_id]
    if not mine:
        raise ValueError(f"trace {trace_id} is not in the traces file")
    by_id = {s["spanId"]: s for s in mine}
    root = next((s for s in mine if s.get("name") == "conversation"), None) or next(
        (s for s in mine if s.get("parentSpanId") not in by_id), mine[0]
    )

    def under_root(span: Mapping[str, Any]) -> bool:
        node: Mapping[str, Any] | None = span
        for _ in range(64):
            if node is None:
                return False
            if node is root:
                return True
            node = by_id.get(str(node.get("parentSpanId")))
        return False

    mine = [s for s in mine if under_root(s)]  # the turn: not the request around it
    origin = int(root["startTimeUnixNano"])

    def depth(span: Mapping[str, Any]) -> int:
        level, parent = 0, span.get("parentSpanId")
        while parent in by_id and parent != root["spanId"] and level < 32:
            level, parent = level + 1, by_id[parent].get("parentSpanId")
        return level

    def status(span: Mapping[str, Any]) -> str:
        if span.get("status", {}).get("code") == _ERROR_CODE:
            return "error"
        found = _attr(span, "coda.stage.status") or _attr(span, "coda.conversation.status")
        return str(found or "ok")

    bars = [
        Bar(
            str(s.get("name")),
            (int(s["startTimeUnixNano"]) - origin) / 1e6,
            (int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"])) / 1e6,
            status(s),
            depth(s),
            str(_attr(s, "error.type") or ""),
            bool(_attr(s, "coda.stage.stalled")),
        )
        for s in sorted(mine, key=lambda s: int(s["startTimeUnixNano"]))
        if s is not root
    ]
    bars = [b for bar in bars for b in (bar, *_sentences(_span_of(mine, bar), origin, bar.depth))]
    total = (int(root["endTimeUnixNano"]) - origin) / 1e6
    cid = _attr(root, "coda.conversation.id") or root.get("name")
    reason = str(_attr(root, "coda.turn.end_reason") or "completed")
    interruption = {
        key: value
        for key in _INTERRUPTION
        if (value := _attr(root, f"coda.turn.{key}")) is not None
    }
    return Waterfall(
        str(cid), total, status(root), trace_id, bars, _span_latency(root), reason,
        interruption or None,
    )  # fmt: skip


def _span_of(spans: list[Mapping[str, Any]], bar: Bar) -> Mapping[str, Any] | None:
    """The span a bar was drawn from (stage names are unique within a turn's trace)."""
    for span in spans:
        if span.get("name") == bar.name:
            return span
    return None


def _sentences(span: Mapping[str, Any] | None, origin: int, depth: int) -> list[Bar]:
    """One bar per ``tts.sentence`` event: the synthesis that ended at the event's time."""
    out = []
    for event in (span or {}).get("events", []):
        if event.get("name") != "tts.sentence":
            continue
        seconds = float(_attr(event, "coda.tts.sentence.synthesis_seconds") or 0.0)
        index = _attr(event, "coda.tts.sentence.index")
        end_ms = (int(event["timeUnixNano"]) - origin) / 1e6
        out.append(Bar(f"sentence {index}", max(0.0, end_ms - seconds * 1e3), seconds * 1e3,
                       depth=depth + 1))  # fmt: skip
    return out


def _span_latency(root: Mapping[str, Any]) -> dict[str, Any] | None:
    """The latency mapping back from the root span's ``coda.latency.*`` attributes."""
    prefix, parts = "coda.latency.", {}
    values: dict[str, Any] = {
        str(a.get("key"))[len(prefix) :]: next(iter(a.get("value", {}).values()), 0.0)
        for a in root.get("attributes", [])
        if str(a.get("key", "")).startswith(prefix)
    }
    if "voice_to_voice" not in values:
        return None
    out: dict[str, Any] = {"output_tokens_per_second": values.get("output_tokens_per_second")}
    for key, value in values.items():
        if key.startswith("breakdown."):
            parts[key[len("breakdown.") :]] = round(float(value) * 1e6)
        elif key in {"voice_to_voice", "time_to_first_audio", "time_to_first_token"}:
            out[f"{key}_us"] = round(float(value) * 1e6)
    out["breakdown_us"] = parts
    return out


def latency_lines(latency: Mapping[str, Any]) -> list[str]:
    """A turn's measures as two lines: the breakdown as a sum, then TTFT, TTFA and tokens/s.

    voice-to-voice 812.3 ms = recognition 0.0 + retrieval 12.3 + llm_first_sentence 650.1
        + tts_first_sentence 120.0 + handoffs 29.9
    time to first token 210.3 ms | time to first audio 780.1 ms | 35.2 tokens/s
    """

    def ms(key: str) -> str:
        value = latency.get(key)
        return f"{value / 1000:.1f} ms" if isinstance(value, int | float) else "n/a"

    parts = " + ".join(
        f"{name} {us / 1000:.1f}" for name, us in (latency.get("breakdown_us") or {}).items()
    )
    rate = latency.get("output_tokens_per_second")
    speed = f"{rate:.1f} tokens/s" if isinstance(rate, int | float) else "tokens/s n/a"
    return [
        f"voice-to-voice {ms('voice_to_voice_us')} = {parts}",
        f"time to first token {ms('time_to_first_token_us')} | "
        f"time to first audio {ms('time_to_first_audio_us')} | {speed}",
    ]


def load(path: Path, trace_id: str | None = None, *, skipped: list[str] | None = None) -> Waterfall:
    """A waterfall from a ``.json`` conversation log or a ``.jsonl`` traces file.

    Bad lines of a traces file are skipped; each is added to ``skipped`` (when given).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        return from_otlp(read_otlp_json_lines(path, skipped=skipped), trace_id)
    return from_log(read_log(path))


def render(wf: Waterfall, width: int = 50, bar_char: str = "█") -> str:
    """The waterfall as text: a header line, then one scaled bar per stage."""
    if width < 10:
        raise ValueError("width must be at least 10 columns")
    trace = f"  trace {wf.trace_id}" if wf.trace_id else ""
    lines = [
        f"conversation {wf.conversation_id}{trace}  {wf.status}{end_note(wf)}"
        f"  total {wf.total_ms:.1f} ms"
    ]
    if not wf.bars:
        return "\n".join([*lines, "  (no stages)"])
    scale = width / wf.total_ms if wf.total_ms > 0 else 0.0
    label_width = max(len("  " * b.depth + b.name) for b in wf.bars)
    for b in wf.bars:
        start = min(width - 1, int(b.offset_ms * scale))
        length = min(width - start, max(1, round(b.duration_ms * scale)))
        bar = " " * start + bar_char * length + " " * (width - start - length)
        label = ("  " * b.depth + b.name).ljust(label_width)
        flag = "" if b.status == "ok" else f"  {b.status.upper()}"
        note = f" {b.note}" if b.note and b.status != "ok" else ""
        note += "  STALLED" if b.stalled else ""
        lines.append(f"  {label}  |{bar}| {b.duration_ms:8.1f} ms{flag}{note}")
    if wf.latency:
        lines.extend(f"  {line}" for line in latency_lines(wf.latency))
    return "\n".join(lines)
