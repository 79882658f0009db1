"""Every environment variable coda-otel reads, as documented constants, and the one home folder.

    from coda_otel import env

    env.coda_home()                          # $CODA_HOME or ~/.coda
    env.coda_home() / env.SNAPSHOTS_DIR      # where snapshots go by default
    env.first(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, env.OTEL_EXPORTER_OTLP_ENDPOINT)

The OpenTelemetry variables keep the meaning the OpenTelemetry specification gives them; the
``CODA_*`` ones are this package's own. Every default folder of the package derives from
:func:`coda_home`, so the library and the ``coda-otel`` command always look in the same place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

CODA_HOME: Final = "CODA_HOME"
"""Folder for everything coda writes (traces, logs, snapshots, memory). Default ``~/.coda``."""

CODA_CAPTURE_CONTENT: Final = "CODA_CAPTURE_CONTENT"
"""``true`` to keep conversation content (sanitized) on spans, logs and events. Default off."""

CODA_REDACT: Final = "CODA_REDACT"
"""``false`` to turn off redaction of e-mails, cards, phones and secrets. Default on."""

CODA_DEBUG_TOKEN: Final = "CODA_DEBUG_TOKEN"
"""Bearer token the debug routes and ``/ws`` require (16+ characters). Unset: loopback only."""

CODA_JAEGER_URL: Final = "CODA_JAEGER_URL"
"""Jaeger UI base URL (e.g. ``http://localhost:16686``): the debug console links each trace id
to ``<url>/trace/<trace_id>``. Unset: trace ids are shown, not linked."""

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: Final = (
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
)
"""The GenAI instrumentations' switch for message content; honoured like CODA_CAPTURE_CONTENT."""

OTEL_SERVICE_NAME: Final = "OTEL_SERVICE_NAME"
"""``service.name`` of every span. Default ``coda-lite``."""

OTEL_RESOURCE_ATTRIBUTES: Final = "OTEL_RESOURCE_ATTRIBUTES"
"""Extra resource attributes, ``key=value,key=value`` (read by the SDK's resource detector)."""

OTEL_TRACES_EXPORTER: Final = "OTEL_TRACES_EXPORTER"
"""``otlp``, ``file``, ``console``, ``none`` or a comma list. Default ``otlp`` with an endpoint,
``file`` without one."""

OTEL_EXPORTER_OTLP_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""Base OTLP endpoint (``/v1/traces`` is appended for HTTP)."""

OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Final = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""OTLP endpoint for traces, used as given; wins over the base endpoint."""

OTEL_EXPORTER_OTLP_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""``http/protobuf`` (default) or ``grpc``."""

OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: Final = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
"""The protocol for traces only; wins over the general one."""

OTEL_EXPORTER_OTLP_TIMEOUT: Final = "OTEL_EXPORTER_OTLP_TIMEOUT"
"""Export timeout in milliseconds."""

OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: Final = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
"""Export timeout for traces only, in milliseconds."""

OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: Final = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
"""Longest attribute value kept; coda's default is 4096 characters."""

OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: Final = "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT"
"""The same limit for span attributes only."""

CODA_TRACE_SAMPLE_PERCENT: Final = "CODA_TRACE_SAMPLE_PERCENT"
"""Set to tail-sample in the process: keep every turn with an error, interrupted or over its
latency budget, and this percent of the rest. Unset: every turn is kept (a Collector, when there
is one, samples with the same variable)."""

CODA_TURN_LATENCY_BUDGET_MS: Final = "CODA_TURN_LATENCY_BUDGET_MS"
"""A turn's latency budget for tail sampling, in milliseconds. Default 15000."""

#: Sub-folders of :func:`coda_home` that the package writes by default.
TRACES_DIR: Final = "traces"
PIPELINE_LOGS_DIR: Final = "pipeline_logs"
SNAPSHOTS_DIR: Final = "snapshots"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def coda_home() -> Path:
    """``$CODA_HOME`` (``~`` expanded) or ``~/.coda``; read at each call, never cached."""
    return Path(os.environ.get(CODA_HOME) or Path.home() / ".coda").expanduser()


def first(*names: str) -> str | None:
    """The first of ``names`` set to a non-blank value, stripped; ``None`` when none is."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def flag(name: str, default: bool) -> bool:
    """A boolean variable (1/true/yes/on, 0/false/no/off); anything else keeps ``default``."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return default
