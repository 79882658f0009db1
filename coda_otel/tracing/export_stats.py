"""Count spans delivered and lost, so a dead collector shows up as a number, not a hang.

:class:`CountingSpanExporter` wraps any SDK exporter: a successful batch adds to
``coda_otel_spans_exported_total``, a failed or raising batch to ``coda_otel_spans_dropped_total``.
:class:`EndedSpanCounter` is a span processor placed *before* the batch processor(s); it tracks
each sampled span it hands over (by weak reference). A span discarded before any counted exporter
saw it (the batch queue was full and evicted it) is counted as dropped the moment it is freed, in
a long-running service too, not only at exit; :meth:`ExportStats.reconcile` counts the spans
still queued at shutdown::

    stats = ExportStats(metrics)                       # metrics: CodaMetrics or None
    exporter = CountingSpanExporter(OTLPSpanExporter(), stats)
    provider.add_span_processor(EndedSpanCounter(stats))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    ...                                                # queue overflow: stats.dropped rises now
    provider.shutdown(); stats.reconcile()             # anything never exported is dropped
    stats.exported, stats.dropped
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)


class _Tracked:
    """A span handed to ``remaining`` exporters that have not taken it yet."""

    __slots__ = ("ref", "remaining")

    def __init__(self, ref: weakref.ref[ReadableSpan], remaining: int) -> None:
        self.ref = ref
        self.remaining = remaining


class ExportStats:
    """Thread-safe totals of spans ended (sampled), exported and dropped."""

    def __init__(self, metrics: CodaMetrics | None = None) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._tracked: dict[int, _Tracked] = {}
        # Drops seen by weak-reference callbacks. Those run wherever a span is freed, even
        # inside a garbage collection while this thread holds _lock, so they never take it:
        # they only pop from _tracked and append here (both atomic); readers drain it.
        self._freed: deque[int] = deque()
        self.ended = 0
        self.exported = 0
        self._dropped = 0
        self._in_flight = 0  # taken by an exporter, result not known yet
        self._reconciled = False

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._drain()

    def track(self, span: ReadableSpan, exporters: int = 1) -> None:
        """A sampled span ended and goes to ``exporters`` counted exporters."""
        key = id(span)
        entry = _Tracked(weakref.ref(span, lambda _ref: self._on_freed(key)), exporters)
        with self._lock:
            self.ended += exporters
            self._tracked[key] = entry

    def taken(self, spans: Sequence[ReadableSpan]) -> None:
        """An exporter received ``spans``; :meth:`settled` follows with the result."""
        with self._lock:
            self._in_flight += len(spans)
            tracked = self._tracked
            for span in spans:
                entry = tracked.get(id(span))
                if entry is not None and entry.ref() is span:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        tracked.pop(id(span), None)

    def _on_freed(self, key: int) -> None:
        """A tracked span was freed before every exporter took it: a full queue dropped it."""
        entry = self._tracked.pop(key, None)
        if entry is None or entry.remaining <= 0:
            return
        self._freed.append(entry.remaining)
        if self._metrics is not None:
            self._metrics.spans_dropped.inc(entry.remaining)

    def _drain(self) -> int:
        """Fold the callbacks' drops into the total (call with _lock held)."""
        while self._freed:
            self._dropped += self._freed.popleft()
        return self._dropped

    def settled(self, count: int, exported: bool) -> None:
        """An exporter finished ``count`` spans it had taken (not counted after reconcile)."""
        with self._lock:
            self._in_flight -= count
            late = self._reconciled
        if late:  # reconcile already counted them as lost
            logger.debug("%d spans finished exporting after shutdown", count)
        elif exported:
            self.add_exported(count)
        else:
            self.add_dropped(count)

    def add_exported(self, count: int) -> None:
        with self._lock:
            self.exported += count
        if self._metrics is not None:
            self._metrics.spans_exported.inc(count)

    def add_dropped(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self._dropped += count
        if self._metrics is not None:
            self._metrics.spans_dropped.inc(count)

    def reconcile(self) -> int:
        """After shutdown: count every span still queued or mid-export as dropped (once)."""
        with self._lock:
            if self._reconciled:
                return 0
            self._reconciled = True
            entries = list(self._tracked.values())
            self._tracked.clear()  # their weak references go with the entries: no callbacks
            in_flight, self._in_flight = self._in_flight, 0
        lost = sum(entry.remaining for entry in entries) + max(0, in_flight)
        self.add_dropped(lost)
        return lost


class CountingSpanExporter(SpanExporter):
    """Delegates to ``inner``; counts results and turns exceptions into FAILURE."""

    def __init__(self, inner: SpanExporter, stats: ExportStats) -> None:
        self.inner = inner
        self.stats = stats

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.stats.taken(spans)
        result = SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        except Exception:
            logger.exception("span exporter %s raised", type(self.inner).__name__)
        finally:
            self.stats.settled(len(spans), result is SpanExportResult.SUCCESS)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class EndedSpanCounter(SpanProcessor):
    """Tracks sampled spans as they end; add it before the BatchSpanProcessor(s).

    ``per_span`` is how many counted exporters each span goes to (one per batch processor).
    """

    def __init__(self, stats: ExportStats, per_span: int = 1) -> None:
        self.stats = stats
        self.per_span = per_span

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.stats.track(span, self.per_span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
