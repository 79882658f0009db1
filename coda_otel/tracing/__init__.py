"""Tracing setup: an SDK tracer provider exporting over OTLP, or to local files with no endpoint.

    from coda_otel.tracing import configure

    telemetry = configure()          # reads OTEL_* variables; files under $CODA_HOME/traces
    tracer = telemetry.tracer_provider.get_tracer("my.pipeline")
    ...
    telemetry.shutdown()             # flushes, bounded in time

Modules: ``setup`` (:func:`configure` and :class:`Telemetry`), ``file_exporter`` (OTLP/JSON
lines on disk), ``export_stats`` (spans exported and dropped, counted), ``tail_sampling``
(whole turns kept by the Collector's policies, in the process, when ``CODA_TRACE_SAMPLE_PERCENT``
is set), ``waterfall`` (a text waterfall of one trace, from a log or an OTLP file).
"""

from __future__ import annotations

from coda_otel.tracing.file_exporter import FileSpanExporter
from coda_otel.tracing.setup import Telemetry, configure

__all__ = ["FileSpanExporter", "Telemetry", "configure"]
