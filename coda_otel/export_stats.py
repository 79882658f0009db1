"""Count spans delivered and lost, so a dead collector shows up as a number, not a hang.

:class:`CountingSpanExporter` wraps any SDK exporter: a successful batch adds to
``coda_otel_spans_exported_total``, a failed or raising batch to ``coda_otel_spans_dropped_total``.
:class:`EndedSpanCounter` is a span processor placed *before* the batch processor; it counts the
sampled spans handed over, so :meth:`ExportStats.reconcile` can also count spans the batch queue
overflowed or still held at shutdown::

    stats = ExportStats(metrics)                       # metrics: CodaMetrics or None
    exporter = CountingSpanExporter(OTLPSpanExporter(), stats)
    provider.add_span_processor(EndedSpanCounter(stats))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    ...
    provider.shutdown(); stats.reconcile()             # anything never exported is dropped
    stats.exported, stats.dropped
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

if TYPE_CHECKING:
    from coda_otel.metrics import CodaMetrics

logger = logging.getLogger(__name__)


class ExportStats:
    """Thread-safe totals of spans ended (sampled), exported and dropped."""

    def __init__(self, metrics: CodaMetrics | None = None) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self.ended = 0
        self.exported = 0
        self.dropped = 0

    def add_ended(self, count: int = 1) -> None:
        with self._lock:
            self.ended += count

    def add_exported(self, count: int) -> None:
        with self._lock:
            self.exported += count
        if self._metrics is not None:
            self._metrics.spans_exported.inc(count)

    def add_dropped(self, count: int) -> None:
        if count <= 0:
            return
        with self._lock:
            self.dropped += count
        if self._metrics is not None:
            self._metrics.spans_dropped.inc(count)

    @property
    def pending(self) -> int:
        """Spans handed to the batch processor that have not reached the exporter yet."""
        with self._lock:
            return max(0, self.ended - self.exported - self.dropped)

    def reconcile(self) -> int:
        """After shutdown: count every span never exported (queue overflow, stuck at exit)."""
        lost = self.pending
        self.add_dropped(lost)
        return lost


class CountingSpanExporter(SpanExporter):
    """Delegates to ``inner``; counts results and turns exceptions into FAILURE."""

    def __init__(self, inner: SpanExporter, stats: ExportStats) -> None:
        self.inner = inner
        self.stats = stats

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:
            logger.exception("span exporter %s raised", type(self.inner).__name__)
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.stats.add_exported(len(spans))
        else:
            self.stats.add_dropped(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class EndedSpanCounter(SpanProcessor):
    """Counts sampled spans as they end; add it before the BatchSpanProcessor(s).

    ``per_span`` is how many counted exporters each span goes to (one per batch processor).
    """

    def __init__(self, stats: ExportStats, per_span: int = 1) -> None:
        self.stats = stats
        self.per_span = per_span

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self.stats.add_ended(self.per_span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
