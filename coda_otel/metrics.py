"""Every Prometheus metric coda-otel exports: names, units, labels and buckets, in one place.

Nothing else in the library creates a metric. Build one :class:`CodaMetrics` per registry and
hand it to the tools that record::

    from prometheus_client import CollectorRegistry
    from coda_otel.metrics import CodaMetrics

    registry = CollectorRegistry()
    metrics = CodaMetrics(registry)
    metrics.stage_duration.labels(stage="llm").observe(0.42, exemplar={"trace_id": "ab" * 16})

Conventions: base units (``_seconds``, ``_bytes``), counters end in ``_total``, and label values
come from small fixed sets or from names chosen in code (stage, cache and component names),
never from ids, keys or text. :func:`bounded` folds anything unexpected into ``"other"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

#: The pipeline's stages, in order. Other stage names are accepted but folded to "other".
STAGES: tuple[str, ...] = ("stt", "memory_retrieval", "llm", "memory_update", "tts")
CONVERSATION_STATUSES: tuple[str, ...] = ("ok", "error", "cancelled")
#: Who cut a turn short: a newer turn in its session, a client that left, a debug command.
INTERRUPT_SOURCES: tuple[str, ...] = ("new_turn", "client_disconnect", "command")
CACHE_RESULTS: tuple[str, ...] = ("hit", "miss")
EVICTION_REASONS: tuple[str, ...] = ("size", "expired")
SNAPSHOT_TRIGGERS: tuple[str, ...] = ("interval", "clear", "import", "export", "manual")
SNAPSHOT_FAILURES: tuple[str, ...] = ("queue_full", "read_error", "write_error")
MEMORY_TIERS: tuple[str, ...] = ("short_term", "long_term")
MEMORY_OPERATIONS: tuple[str, ...] = (
    "add",
    "retrieve",
    "add_interaction",
    "clear",
    "import",
    "export",
)
RESTART_KINDS: tuple[str, ...] = ("restart", "force_restart")
#: gen_ai.token.type: the prompt's tokens and the answer's.
TOKEN_TYPES: tuple[str, ...] = ("input", "output")
#: why a component is ``degraded`` (label ``cause`` of ``coda_component_degraded``): causes
#: a restart cannot fix (coda_otel.health.causes)
DEGRADED_CAUSES: tuple[str, ...] = ("resource", "overload")
#: Telemetry writers that put files under CODA_HOME, and why a write of theirs failed.
TELEMETRY_WRITERS: tuple[str, ...] = ("traces", "conversation_logs", "snapshots", "trace_store")
WRITE_FAILURE_REASONS: tuple[str, ...] = ("disk_full", "reserve", "error")
#: Why an application memory write failed: out of disk or memory (``resource``), or not.
MEMORY_WRITE_FAILURES: tuple[str, ...] = ("resource", "error")
OTHER = "other"

#: Voice-assistant latencies: from a cache lookup (ms) to a slow local LLM (tens of seconds).
STAGE_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: A cache miss costs the computation it replaces: sub-millisecond to seconds.
CACHE_LOAD_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
#: Voice latencies: a streamed first token (tens of ms) to a slow whole answer (seconds).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Decoding rates of local and served models, in output tokens per second.
TOKEN_RATE_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 50, 75, 100, 200, 500)
#: The GenAI conventions' advised boundaries: durations 0.01 s to 81.92 s (doubling), token
#: counts 1 to 67,108,864 (times four).
GENAI_DURATION_BUCKETS: tuple[float, ...] = tuple(0.01 * 2**i for i in range(14))
GENAI_TOKEN_BUCKETS: tuple[float, ...] = tuple(4.0**i for i in range(14))
#: The GenAI metrics' attributes, as Prometheus labels (dots become underscores).
GENAI_LABELS: tuple[str, ...] = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
)
GENAI_TOKEN_TYPES: tuple[str, ...] = ("input", "output")
#: Waiting for a turn slot: none (most turns) to the longest allowed wait.
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    60.0,
)
#: Why a turn was refused before it started.
SHED_REASONS: tuple[str, ...] = ("queue_full", "queue_timeout")
CHECK_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
SNAPSHOT_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

#: Most distinct free-form values (error types) one label may take before folding to "other".
MAX_DYNAMIC_VALUES = 20


def bounded(value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` when it is one of ``allowed``, else ``"other"``.

    >>> bounded("llm", STAGES), bounded("conv-1234", STAGES)
    ('llm', 'other')
    """
    return value if value in allowed else OTHER


class _DynamicLabel:
    """A label whose values are learned (exception class names) but capped in number.

    >>> label = _DynamicLabel(limit=1)
    >>> label("coda_lite.llm.LLMError"), label("ValueError"), label("../etc")
    ('LLMError', 'other', 'other')
    """

    def __init__(self, limit: int = MAX_DYNAMIC_VALUES) -> None:
        self._seen: set[str] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        value = value.rpartition(".")[2]  # "coda_lite.llm.LLMError" -> "LLMError"
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit and value.isidentifier():
                self._seen.add(value)
                return value
        return OTHER


class CacheCounts(NamedTuple):
    """One cache's counts since its debugger started."""

    hits: float = 0.0
    misses: float = 0.0
    saved_s: float = 0.0
    size_evictions: float = 0.0
    expiries: float = 0.0


#: Where :class:`CacheCounters` reads counts: ``(cache name, counts)`` pairs, current.
CacheCountSource = Callable[[], Iterable[tuple[str, CacheCounts]]]


class CacheCounters(Collector):
    """``coda_cache_requests_total{cache, result}``, ``coda_cache_time_saved_seconds_total
    {cache}`` and ``coda_cache_evictions_total{cache, reason}``, read at scrape time::

        metrics.cache_counters.add_source(debugger.counts)   # the cache debugger does this

    A cache hit is on the hot path: its owner keeps plain counts (one lock, two additions)
    instead of paying two Prometheus increments per hit. Counts of one cache name from
    several sources are summed.
    """

    def __init__(self) -> None:
        self._sources: list[CacheCountSource] = []
        self._lock = threading.Lock()

    def add_source(self, source: CacheCountSource) -> None:
        with self._lock:
            self._sources.append(source)

    def describe(self) -> list[Metric]:
        return self._families({})

    def collect(self) -> list[Metric]:
        with self._lock:
            sources = list(self._sources)
        totals: dict[str, list[float]] = {}
        for source in sources:
            for cache, counts in source():
                acc = totals.setdefault(cache, [0.0] * len(CacheCounts._fields))
                for i, value in enumerate(counts):
                    acc[i] += value
        return self._families({k: CacheCounts(*v) for k, v in totals.items()})

    @staticmethod
    def _families(totals: dict[str, CacheCounts]) -> list[Metric]:
        requests = CounterMetricFamily(
            "coda_cache_requests", "Cache lookups, by cache and result.", labels=["cache", "result"]
        )
        saved = CounterMetricFamily(
            "coda_cache_time_saved_seconds",
            "Compute time hits avoided, credited at each cache's measured load cost.",
            labels=["cache"],
        )
        evictions = CounterMetricFamily(
            "coda_cache_evictions", "Entries evicted, by reason.", labels=["cache", "reason"]
        )
        for cache, c in sorted(totals.items()):
            requests.add_metric([cache, "hit"], c.hits)
            requests.add_metric([cache, "miss"], c.misses)
            saved.add_metric([cache], c.saved_s)
            evictions.add_metric([cache, "size"], c.size_evictions)
            evictions.add_metric([cache, "expired"], c.expiries)
        return [requests, saved, evictions]


class CodaMetrics:
    """All coda-otel metric families, registered on one registry.

    ``registry`` defaults to a fresh :class:`CollectorRegistry` (not the global one), so tests
    and several services in one process never collide. ``process_collector=True`` adds the
    standard ``process_*`` series (``process_resident_memory_bytes``) and platform info.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        process_collector: bool = True,
        version: str = "unknown",
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_collector:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.error_type = _DynamicLabel()

        self.build_info = Info("coda_otel_build", "coda-otel version", registry=r)
        self.build_info.info({"version": version})

        # --- pipeline -----------------------------------------------------------------
        self.stage_duration = Histogram(
            "coda_pipeline_stage_duration_seconds",
            "Duration of one pipeline stage; exemplars carry the stage span's trace_id.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.conversations = Counter(
            "coda_conversations",
            "Conversation turns processed, by outcome.",
            ["status"],
            registry=r,
        )
        self.conversation_duration = Histogram(
            "coda_conversation_duration_seconds",
            "Wall time of one whole conversation turn.",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        # --- voice latency (one observation per turn that spoke; exemplar: its trace) ------
        self.time_to_first_token = Histogram(
            "coda_llm_time_to_first_token_seconds",
            "From the model request to its first streamed text.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_audio = Histogram(
            "coda_time_to_first_audio_seconds",
            "From the model request to the first synthesized audio of the answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.voice_to_voice = Histogram(
            "coda_voice_to_voice_latency_seconds",
            "From the end of the user's speech (turn input complete) to the first answer audio.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.output_token_rate = Histogram(
            "coda_llm_output_tokens_per_second",
            "Decoding rate of the model after its first token (output tokens per second).",
            buckets=TOKEN_RATE_BUCKETS,
            registry=r,
        )
        # --- GenAI client metrics (OpenTelemetry GenAI conventions, Prometheus names) ---------
        genai = list(GENAI_LABELS)
        self.genai_operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration (gen_ai.client.operation.duration).",
            [*genai, "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            registry=r,
        )
        self.genai_token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per GenAI operation, by token type (gen_ai.client.token.usage).",
            [*genai, "gen_ai_token_type"],
            buckets=GENAI_TOKEN_BUCKETS,
            registry=r,
        )
        self.genai_time_to_first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "From the request to the first streamed chunk of the response "
            "(gen_ai.client.operation.time_to_first_chunk).",
            genai,
            buckets=GENAI_DURATION_BUCKETS,
            registry=r,
        )
        # --- admission: turns waiting for a slot, their wait, and turns refused -------------
        self.turn_queue_depth = Gauge(
            "coda_turn_queue_depth", "Turns waiting for a slot to start.", registry=r
        )
        self.turn_queue_wait = Histogram(
            "coda_turn_queue_wait_seconds",
            "How long an admitted turn waited for its slot.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.turns_shed = Counter(
            "coda_turns_shed",
            "Turns refused before they started (overloaded), by reason.",
            ["reason"],
            registry=r,
        )
        self.turns_interrupted = Counter(
            "coda_turns_interrupted",
            "Turns cut short before their answer was complete (barge-in), by who interrupted.",
            ["source"],
            registry=r,
        )
        self.stage_stalls = Counter(
            "coda_stage_stalls",
            "Stages seen still running with no progress for longer than their budget.",
            ["stage"],
            registry=r,
        )
        self.stage_inflight_oldest = Gauge(
            "coda_stage_inflight_oldest_seconds",
            "Age of the oldest pipeline stage still running (0 when none runs).",
            registry=r,
        )
        # --- what a service reports about itself (e.g. Pipecat's MetricsFrame) ------------
        self.service_ttfb = Histogram(
            "coda_service_ttfb_seconds",
            "Time to first byte a stage's service measured itself (request to first output).",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.service_processing = Histogram(
            "coda_service_processing_seconds",
            "Processing time a stage's service measured itself for one request.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.llm_tokens = Counter(
            "coda_llm_tokens",
            "Model tokens used, by type (input: the prompt, output: the answer).",
            ["type"],
            registry=r,
        )
        self.tts_characters = Counter(
            "coda_tts_characters",
            "Characters sent to speech synthesis.",
            registry=r,
        )
        self.stage_errors = Counter(
            "coda_pipeline_stage_errors",
            "Stage failures, by stage and exception class.",
            ["stage", "error_type"],
            registry=r,
        )
        self.spans_dropped = Counter(
            "coda_otel_spans_dropped",
            "Spans the exporter could not deliver (queue full or export failed).",
            registry=r,
        )
        self.spans_exported = Counter(
            "coda_otel_spans_exported",
            "Spans the exporter delivered.",
            registry=r,
        )

        # --- caches ---------------------------------------------------------------------
        #: requests, time saved and evictions: counted by the cache debuggers, read at scrape
        self.cache_counters = CacheCounters()
        r.register(self.cache_counters)
        self.cache_entries = Gauge(
            "coda_cache_entries", "Entries currently held.", ["cache"], registry=r
        )
        self.cache_load_duration = Histogram(
            "coda_cache_load_duration_seconds",
            "Cost of a miss: time to compute the value a hit would have returned.",
            ["cache"],
            buckets=CACHE_LOAD_BUCKETS,
            registry=r,
        )

        # --- memory ---------------------------------------------------------------------
        self.memory_snapshots = Counter(
            "coda_memory_snapshots", "Memory snapshots taken, by trigger.", ["trigger"],
            registry=r,
        )  # fmt: skip
        self.memory_snapshot_duration = Histogram(
            "coda_memory_snapshot_duration_seconds",
            "Time to copy and write one memory snapshot.",
            buckets=SNAPSHOT_BUCKETS,
            registry=r,
        )
        self.memory_snapshot_bytes = Gauge(
            "coda_memory_snapshot_bytes", "Size of the latest snapshot file.", registry=r
        )
        self.memory_items = Gauge(
            "coda_memory_items", "Items held in memory, by tier.", ["tier"], registry=r
        )
        self.memory_topics = Gauge("coda_memory_topics", "Distinct long-term topics.", registry=r)
        self.memory_snapshot_failures = Counter(
            "coda_memory_snapshot_failures",
            "Snapshots not written, by reason (writer queue full, read error, write error).",
            ["reason"],
            registry=r,
        )
        self.memory_operations = Counter(
            "coda_memory_operations", "Memory operations, by kind.", ["operation"], registry=r
        )
        self.memory_evictions = Counter(
            "coda_memory_evictions",
            "Long-term memories evicted because their owner reached the per-owner cap.",
            registry=r,
        )
        self.memory_write_failures = Counter(
            "coda_memory_write_failures",
            "Long-term memory writes that failed, by reason (resource: out of disk or memory).",
            ["reason"],
            registry=r,
        )

        # --- health ---------------------------------------------------------------------
        self.component_up = Gauge(
            "coda_component_up", "1 when the component's last check passed.", ["component"],
            registry=r,
        )  # fmt: skip
        self.component_failed = Gauge(
            "coda_component_failed",
            "1 while the component's restart budget is spent: no more restarts, only probes with "
            "backoff until a check passes.",
            ["component"],
            registry=r,
        )
        self.component_degraded = Gauge(
            "coda_component_degraded",
            "1 while the component is degraded for this cause (resource: disk or memory "
            "exhausted; overload: its work queues); it is re-checked, never restarted.",
            ["component", "cause"],
            registry=r,
        )
        self.component_restarts = Counter(
            "coda_component_restarts",
            "Recovery attempts, by kind.",
            ["component", "kind"],
            registry=r,
        )
        self.component_heartbeat_age = Gauge(
            "coda_component_heartbeat_age_seconds",
            "Seconds since the component's last healthy heartbeat.",
            ["component"],
            registry=r,
        )
        self.component_check_duration = Histogram(
            "coda_component_check_duration_seconds",
            "Time one heartbeat check took.",
            ["component"],
            buckets=CHECK_BUCKETS,
            registry=r,
        )
        self.memory_leak_suspected = Gauge(
            "coda_memory_leak_suspected",
            "1 while resident memory grows steadily over the detection window.",
            ["component"],
            registry=r,
        )
        self.memory_growth_rate = Gauge(
            "coda_memory_growth_bytes_per_second",
            "Least-squares slope of resident memory over the detection window.",
            ["component"],
            registry=r,
        )

        # --- disk and telemetry writers --------------------------------------------------
        self.disk_free = Gauge(
            "coda_disk_free_bytes",
            "Free bytes on the filesystem holding the data folder (CODA_HOME).",
            registry=r,
        )
        self.disk_low = Gauge(
            "coda_disk_low_bytes",
            "Free space below which the disk component is unhealthy (health degraded).",
            registry=r,
        )
        self.telemetry_write_failures = Counter(
            "coda_telemetry_write_failures",
            "Telemetry writes that failed or were skipped to keep the disk reserve, by writer.",
            ["writer", "reason"],
            registry=r,
        )

        # --- HTTP connections: open now, and refused at the server's cap ------------------
        self.http_connections_open = Gauge(
            "coda_http_connections_open", "Client connections the server holds open.", registry=r
        )
        self.http_connections_refused = Counter(
            "coda_http_connections_refused",
            "Connections answered 503 and closed because the server held its maximum.",
            registry=r,
        )

        # --- debug WebSocket ------------------------------------------------------------
        self.ws_clients = Gauge("coda_debug_ws_clients", "Connected debug WebSocket clients.",
                                registry=r)  # fmt: skip
        self.ws_events_dropped = Counter(
            "coda_debug_ws_events_dropped",
            "Events dropped for slow WebSocket consumers (oldest first).",
            registry=r,
        )

        self._initialise_label_sets()

    def _initialise_label_sets(self) -> None:
        """Create every known label combination at zero, so dashboards show 0, not 'No data'."""
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for status in CONVERSATION_STATUSES:
            self.conversations.labels(status=status)
        for stage in STAGES:
            self.stage_stalls.labels(stage=stage)
        for source in INTERRUPT_SOURCES:
            self.turns_interrupted.labels(source=source)
        for reason in SHED_REASONS:
            self.turns_shed.labels(reason=reason)
        for kind in TOKEN_TYPES:
            self.llm_tokens.labels(type=kind)
        for trigger in SNAPSHOT_TRIGGERS:
            self.memory_snapshots.labels(trigger=trigger)
        for tier in MEMORY_TIERS:
            self.memory_items.labels(tier=tier)
        for reason in SNAPSHOT_FAILURES:
            self.memory_snapshot_failures.labels(reason=reason)
        for op in MEMORY_OPERATIONS:
            self.memory_operations.labels(operation=op)
        for reason in MEMORY_WRITE_FAILURES:
            self.memory_write_failures.labels(reason=reason)
        for writer in TELEMETRY_WRITERS:
            for reason in WRITE_FAILURE_REASONS:
                self.telemetry_write_failures.labels(writer=writer, reason=reason)

    def register_cache(self, cache: str) -> None:
        """Initialise one cache's gauge and histogram series (its counters are the
        :class:`CacheCounters` of the debugger that registers it)."""
        self.cache_entries.labels(cache=cache)
        self.cache_load_duration.labels(cache=cache)

    def register_component(self, component: str) -> None:
        """Initialise one component's health series (call when the watchdog adopts it)."""
        self.component_up.labels(component=component)
        self.component_failed.labels(component=component)
        for cause in DEGRADED_CAUSES:
            self.component_degraded.labels(component=component, cause=cause)
        for kind in RESTART_KINDS:
            self.component_restarts.labels(component=component, kind=kind)
        self.component_heartbeat_age.labels(component=component)
        self.component_check_duration.labels(component=component)
        self.memory_leak_suspected.labels(component=component)
        self.memory_growth_rate.labels(component=component)
