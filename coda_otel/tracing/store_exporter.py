"""A span exporter that keeps finished turns in the local trace store (:mod:`.store`).

It runs on its own :class:`BatchSpanProcessor` beside the configured exporters (so a dead
collector, tail sampling or ``OTEL_TRACES_EXPORTER=none`` change nothing here), on the
processor's worker thread, never on the pipeline's::

    store = TraceStore(home / "traces" / "turns.sqlite3")
    provider.add_span_processor(store_processor(TraceStoreExporter(store)))

Each span becomes a plain record (:func:`span_record`): hex ids, times in Unix nanoseconds,
the attributes and events as the span carries them (already redacted by the pipeline's
sanitizer).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from coda_otel.tracing.store import TraceStore
from coda_otel.write_guard import WriteGuard

logger = logging.getLogger(__name__)

__all__ = ["TraceStoreExporter", "span_record", "store_processor"]

#: How long a finished turn waits before it is written: short, so the console finds it soon.
STORE_DELAY_MS = 500
#: Bytes a stored span is expected to take (checked against the disk reserve).
SPAN_SIZE_HINT = 1024


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a JSON-ready dict."""
    ctx = span.context
    assert ctx is not None
    start = span.start_time or 0
    end = span.end_time or start
    parent = span.parent
    return {
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_unix_nano": start,
        "end_unix_nano": end,
        "duration_ms": (end - start) / 1e6,
        "status": {"code": span.status.status_code.name, "message": span.status.description},
        "attributes": _plain(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _plain(e.attributes)}
            for e in span.events
        ],
        "links": [
            {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
            for link in span.links
        ],
    }


class TraceStoreExporter(SpanExporter):
    """Writes exported spans into ``store``; failures are counted by ``guard``, never raised."""

    def __init__(self, store: TraceStore, guard: WriteGuard | None = None) -> None:
        self.store = store
        self.guard = guard if guard is not None else WriteGuard("trace_store")
        self._shutdown = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            records = [span_record(s) for s in spans if s.context is not None]
            if not self.guard.may_write(len(records) * SPAN_SIZE_HINT):
                return SpanExportResult.FAILURE
            self.store.add(records)
        except (OSError, sqlite3.Error, ValueError) as exc:
            self.guard.failed(exc)
            return SpanExportResult.FAILURE
        self.guard.succeeded()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def store_processor(exporter: TraceStoreExporter) -> BatchSpanProcessor:
    """The batch processor that feeds ``exporter`` off the pipeline's threads."""
    return BatchSpanProcessor(exporter, schedule_delay_millis=STORE_DELAY_MS)
