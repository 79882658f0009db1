"""Tracing set-up: one call builds the TracerProvider from the standard OTEL_* variables.

    from coda_otel.tracing.setup import configure

    telemetry = configure(service_version="0.1.0", metrics=metrics)   # once, at start-up
    print(telemetry.exporter_description)      # 'file /home/me/.coda/traces/traces.jsonl'
    ...
    telemetry.shutdown(timeout_s=3.0)          # bounded, even with a dead collector

Exporter choice (standard variables, read at ``configure`` time):

* ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console``, ``none`` (comma list allowed; coda adds
  ``file``). Unset: ``otlp`` when an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` is set, else
  ``file``: OTLP JSON lines under ``CODA_HOME/traces/`` (``CODA_HOME`` defaults to ``~/.coda``).
* ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``: ``http/protobuf`` (default, as the OTel spec says)
  or ``grpc``; endpoints and headers are read by the OTLP exporters themselves.
* ``CODA_TRACE_SAMPLE_PERCENT`` (and ``CODA_TURN_LATENCY_BUDGET_MS``) turn on tail sampling
  in the process, with the Collector's policies (:mod:`coda_otel.tracing.tail_sampling`).
* ``OTEL_RESOURCE_ATTRIBUTES`` adds resource attributes and may set ``service.instance.id``
  (default: a random UUID per process); see :func:`build_resource`.
* ``OTEL_TRACES_SAMPLER`` / ``_ARG``, ``OTEL_BSP_*`` and ``OTEL_*ATTRIBUTE_VALUE_LENGTH_LIMIT``
  are honoured by the SDK.

A provider passed in is used as is and never shut down here. With ``set_global=True`` a global
provider the host already installed is reused, never replaced.
"""

from __future__ import annotations

import atexit
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.resources import (
    HOST_NAME,
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from coda_otel import env
from coda_otel.metrics import CodaMetrics
from coda_otel.tracing.export_stats import CountingSpanExporter, EndedSpanCounter, ExportStats
from coda_otel.tracing.file_exporter import FileSpanExporter
from coda_otel.tracing.tail_sampling import TailPolicy, TailSamplingProcessor, describe
from coda_otel.write_guard import WriteGuard

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "coda-lite"
EXPORTERS = ("otlp", "console", "none", "file")
PROTOCOLS = ("grpc", "http/protobuf")
#: Attribute values longer than this are cut by the SDK unless OTEL_*_LENGTH_LIMIT says otherwise.
DEFAULT_ATTRIBUTE_LENGTH = 4096


def exporter_names() -> list[str]:
    """The exporters ``OTEL_TRACES_EXPORTER`` asks for (with coda's default when unset)."""
    raw = env.first(env.OTEL_TRACES_EXPORTER)
    if raw is None:
        endpoint = env.first(
            env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, env.OTEL_EXPORTER_OTLP_ENDPOINT
        )
        return ["otlp"] if endpoint else ["file"]
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={raw!r}: unknown exporter {unknown[0]!r}; "
            f"use one or more of {', '.join(EXPORTERS)}"
        )
    if "none" in names and len(names) > 1:
        raise ValueError(f"OTEL_TRACES_EXPORTER={raw!r}: 'none' cannot be combined with others")
    return [] if names == ["none"] else list(dict.fromkeys(names))


def otlp_protocol() -> str:
    raw = env.first(env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, env.OTEL_EXPORTER_OTLP_PROTOCOL)
    protocol = (raw or "http/protobuf").lower()
    if protocol not in PROTOCOLS:
        raise ValueError(
            f"OTLP protocol {raw!r} is not supported; use one of {', '.join(PROTOCOLS)}"
        )
    return protocol


def _otlp_exporter(timeout_s: float) -> tuple[SpanExporter, str]:
    protocol = otlp_protocol()
    # An OTEL_*_TIMEOUT set by the user wins; otherwise keep exports short so exit stays prompt.
    user_timeout = env.first(env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, env.OTEL_EXPORTER_OTLP_TIMEOUT)
    timeout = None if user_timeout else timeout_s
    traces_endpoint = env.first(env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    base = env.first(env.OTEL_EXPORTER_OTLP_ENDPOINT)
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        where = traces_endpoint or base or "http://localhost:4317"
        return GrpcExporter(timeout=timeout), f"otlp grpc {where}"
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    where = traces_endpoint or f"{(base or 'http://localhost:4318').rstrip('/')}/v1/traces"
    return HttpExporter(timeout=timeout), f"otlp http/protobuf {where}"


def build_exporters(
    coda_home: Path | None = None,
    export_timeout_s: float = 2.0,
    *,
    file_guard: WriteGuard | None = None,
) -> list[tuple[SpanExporter, str]]:
    """The exporters the environment asks for, each with a one-line description.

    ``file_guard`` keeps the disk reserve and counts failures for the local traces file.
    """
    built: list[tuple[SpanExporter, str]] = []
    for name in exporter_names():
        if name == "otlp":
            built.append(_otlp_exporter(export_timeout_s))
        elif name == "console":
            built.append((ConsoleSpanExporter(), "console"))
        else:
            folder = (coda_home or env.coda_home()) / env.TRACES_DIR
            exporter = FileSpanExporter(folder, guard=file_guard)
            built.append((exporter, f"file {exporter.path}"))
    return built


def build_resource(service_name: str | None, service_version: str | None) -> Resource:
    """The resource every span carries, one per process::

        service.name         argument > OTEL_SERVICE_NAME > OTEL_RESOURCE_ATTRIBUTES >
                             'coda-lite'
        service.version      argument > OTEL_RESOURCE_ATTRIBUTES > the package version
        service.instance.id  OTEL_RESOURCE_ATTRIBUTES > a random UUID (new at each start)
        host.name            OTEL_RESOURCE_ATTRIBUTES > the host name

    Any other ``OTEL_RESOURCE_ATTRIBUTES`` entry is kept as given: on Kubernetes the pod's
    name, namespace and node, filled in from the downward API (deploy/kubernetes/).
    """
    from coda_otel import __version__

    from_env = OTELResourceDetector().detect().attributes
    return Resource.create(
        {
            SERVICE_INSTANCE_ID: str(uuid.uuid4()),
            HOST_NAME: socket.gethostname(),
            **from_env,
            SERVICE_NAME: service_name
            or env.first(env.OTEL_SERVICE_NAME)
            or str(from_env.get(SERVICE_NAME) or DEFAULT_SERVICE_NAME),
            SERVICE_VERSION: service_version or str(from_env.get(SERVICE_VERSION) or __version__),
        }
    )


def _span_limits() -> SpanLimits:
    limit_set = env.first(
        env.OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, env.OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT
    )
    return SpanLimits() if limit_set else SpanLimits(max_attribute_length=DEFAULT_ATTRIBUTE_LENGTH)


def _run_bounded(work: Callable[[], object], timeout_s: float) -> bool:
    """Run ``work`` on a daemon thread; True if it finished within ``timeout_s``."""

    def target() -> None:
        try:
            work()
        except Exception:
            logger.exception("telemetry shutdown step failed")

    thread = threading.Thread(target=target, name="coda-otel-flush", daemon=True)
    thread.start()
    thread.join(max(0.0, timeout_s))
    return not thread.is_alive()


class Telemetry:
    """What :func:`configure` built: the provider, what it exports to, and a bounded shutdown."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        exporter_description: str,
        *,
        owned: bool,
        stats: ExportStats | None = None,
        exporters: tuple[SpanExporter, ...] = (),
    ) -> None:
        self.tracer_provider = tracer_provider
        self.exporter_description = exporter_description
        self.owned = owned
        self.stats = stats
        self._exporters = exporters
        self._closed = False
        if owned:
            atexit.register(self.shutdown)

    def force_flush(self, timeout_s: float = 5.0) -> bool:
        """Export what is queued; True when done within ``timeout_s``."""
        flush = getattr(self.tracer_provider, "force_flush", None)
        if flush is None:
            return True
        return _run_bounded(lambda: flush(int(timeout_s * 1000)), timeout_s)

    def shutdown(self, timeout_s: float = 3.0) -> bool:
        """Flush and stop within ``timeout_s`` (a provider not built here is only flushed).

        Spans still unexported afterwards are counted as dropped. Idempotent.
        """
        if self._closed:
            return True
        self._closed = True
        atexit.unregister(self.shutdown)
        if not self.owned:
            return self.force_flush(timeout_s)
        provider = self.tracer_provider
        assert isinstance(provider, SDKTracerProvider)

        def flush_then_stop() -> None:
            provider.force_flush(int(timeout_s * 1000))
            provider.shutdown()

        done = _run_bounded(flush_then_stop, timeout_s)
        if not done:
            logger.warning("trace export did not finish within %.1fs; giving up", timeout_s)
            for exporter in self._exporters:  # aborts retry back-offs still waiting
                try:
                    exporter.shutdown()
                except Exception:
                    logger.debug("exporter shutdown failed", exc_info=True)
        if self.stats is not None:
            self.stats.reconcile()
        return done


def configure(
    *,
    service_name: str | None = None,
    service_version: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    coda_home: Path | None = None,
    metrics: CodaMetrics | None = None,
    set_global: bool = True,
    export_timeout_s: float = 2.0,
    write_room: Callable[[int], bool] | None = None,
    local_processors: Sequence[SpanProcessor] = (),
) -> Telemetry:
    """Build (or adopt) the TracerProvider; see the module docstring for the variables.

    ``local_processors`` (the local trace store's) see every sampled span beside the
    exporters: not tail-sampled, not counted as exported, there with ``none`` too. A provider
    passed in or adopted is not given them.
    """
    if tracer_provider is not None:
        return Telemetry(tracer_provider, "tracer provider passed in by the host", owned=False)
    if set_global:
        current = trace.get_tracer_provider()
        if not isinstance(current, trace.ProxyTracerProvider):
            logger.info("a global tracer provider is already set; coda-otel uses it as is")
            return Telemetry(current, "global tracer provider set by the host", owned=False)
    if export_timeout_s <= 0:
        raise ValueError(f"export_timeout_s must be positive, got {export_timeout_s}")
    guard = WriteGuard("traces", metrics=metrics, room=write_room)
    exporters = build_exporters(coda_home, export_timeout_s, file_guard=guard)
    provider = SDKTracerProvider(
        resource=build_resource(service_name, service_version),
        shutdown_on_exit=False,  # Telemetry registers a bounded shutdown instead
        span_limits=_span_limits(),
    )
    stats = ExportStats(metrics)
    processors: list[SpanProcessor] = []
    if exporters:
        processors.append(EndedSpanCounter(stats, per_span=len(exporters)))
    for exporter, _ in exporters:
        processors.append(BatchSpanProcessor(CountingSpanExporter(exporter, stats)))
    description = ", ".join(d for _, d in exporters) or "none"
    policy = TailPolicy.from_env()
    if policy is not None and processors:  # sampled-out turns are neither exported nor dropped
        processors = [TailSamplingProcessor(policy, processors)]
        description += f"; {describe(policy)}"
    for processor in [*processors, *local_processors]:
        provider.add_span_processor(processor)
    telemetry = Telemetry(
        provider,
        description,
        owned=True,
        stats=stats,
        exporters=tuple(e for e, _ in exporters),
    )
    if set_global:
        trace.set_tracer_provider(provider)
    logger.info("tracing: exporting to %s", description)
    return telemetry
