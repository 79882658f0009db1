"""The composition root: the one place where Coda Lite is wired to coda-otel.

The stage modules know nothing of telemetry; here they are wrapped and observed::

    app = build_app(load_config())
    result = await app.run_turn("My name is Ada.")   # one trace, five stage spans, metrics
    app.outputs        # where traces, logs and snapshots went
    await app.aclose()

What is built: a TracerProvider from the standard ``OTEL_*`` variables (local OTLP JSON files
when nothing is set), one Prometheus registry with every coda metric, the pipeline debugger
(spans + metrics + conversation logs), a CachedEmbedder and an LLM-response cache reporting to
one CacheDebugger, the memory snapshot emitter, the watchdog over the five stage components
(wrapped by a fault injector), and the debug hub for the WebSocket API.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from coda_lite import __version__
from coda_lite.config import Config
from coda_lite.pipeline.build import Pipeline, build_pipeline
from coda_lite.pipeline.conversation import TurnResult
from coda_lite.service.debug_control import AppDebugControl
from coda_lite.service.wiring import (
    CachedLLM,
    ObservedLLM,
    memory_write_report,
    trace_headers,
    watch_memory_size,
)
from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.embedder import CachedEmbedder
from coda_otel.cache.observed import ObservedTTLCache
from coda_otel.health.disk import DiskSpace
from coda_otel.health.faults import FaultInjector
from coda_otel.health.leak import LeakDetector
from coda_otel.health.watchdog import CodaWatchdog
from coda_otel.inference import InferenceObserver
from coda_otel.metrics import SHED_REASONS as SHED
from coda_otel.metrics import CodaMetrics, bounded
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.pipeline.metrics_listener import PipelineMetrics
from coda_otel.sanitize import Sanitizer
from coda_otel.snapshots.emitter import MemorySnapshotEmitter
from coda_otel.tracing.setup import Telemetry, configure
from coda_otel.tracing.store import TraceStore, open_trace_store
from coda_otel.tracing.store_exporter import TraceStoreExporter, store_processor
from coda_otel.tracing.waterfall import latency_lines
from coda_otel.write_guard import WriteGuard
from coda_otel.ws.hub import DebugHub

__all__ = [
    "App",
    "CachedLLM",
    "build_app",
    "latency_lines",
]  # CachedLLM, latency_lines: re-exported

log = logging.getLogger(__name__)


@dataclass
class App:
    """Everything ``build_app`` wired; ``aclose`` shuts it down in order, bounded."""

    config: Config
    pipeline: Pipeline
    metrics: CodaMetrics
    telemetry: Telemetry
    debugger: ConversationPipelineDebugger
    cache_debugger: CacheDebugger
    snapshots: MemorySnapshotEmitter
    watchdog: CodaWatchdog
    faults: FaultInjector
    hub: DebugHub
    outputs: dict[str, str] = field(default_factory=dict)
    trace_store: TraceStore | None = None  # the last N turns, for the console's Traces view

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    async def run_turn(
        self,
        user_input: str | bytes,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> TurnResult:
        """One turn; memory is ``user_id``'s (else ``session_id``'s, else the default owner's)."""
        return await self.pipeline.manager.process_user_input(
            user_input, session_id=session_id, user_id=user_id
        )

    async def run_turn_guarded(
        self,
        user_input: str | bytes,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
    ) -> TurnResult:
        """:meth:`run_turn` for a client: the turn runs in its own task; a cancelled caller
        (the client left) interrupts it, and an interrupted turn raises ``TurnInterrupted``."""
        return await self.pipeline.manager.process_guarded(
            user_input, session_id=session_id, user_id=user_id
        )

    async def interrupt(self, session_id: str, source: str = "command") -> str | None:
        """Cut short ``session_id``'s running turn; its conversation id, or None if none ran."""
        return await self.pipeline.manager.interrupt(session_id, source)

    async def warm_up(self) -> bool:
        """Load the local model now (it loads on first use otherwise); True when one loaded."""
        for component in self.pipeline.components:
            load = getattr(component, "load", None) if component.name == "llm" else None
            if load is not None:
                await load()
                return True
        return False

    async def aclose(self) -> None:
        self.watchdog.stop()
        await self.hub.aclose()
        await asyncio.to_thread(self.snapshots.close)
        await asyncio.to_thread(self.debugger.close)
        await asyncio.to_thread(self.telemetry.shutdown)
        if self.trace_store is not None:
            await asyncio.to_thread(self.trace_store.close)
        await self.pipeline.aclose()


def build_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    set_global_tracer: bool = False,
) -> App:
    """Build the assistant with all of coda-otel attached (see the module docstring)."""
    config.ensure_dirs()
    tel = config.telemetry
    metrics = CodaMetrics(registry, version=__version__)
    disk = DiskSpace(
        config.home,
        low_bytes=tel.disk_low_bytes,
        reserve_bytes=tel.disk_reserve_bytes,
        metrics=metrics,
    )
    trace_store = (
        open_trace_store(config.trace_store_path, max_turns=tel.trace_store_turns,
                         max_bytes=tel.trace_store_max_bytes)
        if tel.trace_store_turns > 0 else None
    )  # fmt: skip
    store_guard = WriteGuard("trace_store", metrics=metrics, room=disk.telemetry_may_write)
    telemetry = configure(
        service_version=__version__,
        coda_home=config.home,
        metrics=metrics,
        set_global=set_global_tracer,
        write_room=disk.telemetry_may_write,
        local_processors=[store_processor(TraceStoreExporter(trace_store, store_guard))]
        if trace_store is not None
        else [],
    )
    # one content policy (capture, redaction) for every writer: spans, logs, files, WebSocket
    sanitizer = Sanitizer.from_env(capture_content=tel.capture_content)
    debugger = ConversationPipelineDebugger(
        enabled=tel.enabled,
        output_dir=config.pipeline_logs_dir,
        tracer_provider=telemetry.tracer_provider,
        listeners=[PipelineMetrics(metrics)],
        sanitizer=sanitizer,
        log_max_files=tel.pipeline_log_max_files,
        log_max_bytes=tel.pipeline_log_max_bytes,
        stall_budgets=config.pipeline.stage_budgets(),
        log_guard=WriteGuard("conversation_logs", metrics=metrics, room=disk.telemetry_may_write),
    )
    metrics.stage_inflight_oldest.set_function(debugger.stalls.oldest_age)
    caches = CacheDebugger(enabled=tel.enabled, metrics=metrics)

    faults = FaultInjector()  # an injected crash fails the stage too, not only its heartbeat

    def wrap_embedder(embedder: Any) -> Any:
        return CachedEmbedder(
            faults.guard("embedder", embedder, ["encode"]),
            maxsize=tel.embed_cache_size,
            ttl=tel.embed_cache_ttl,
            debugger=caches,
        )

    inference = InferenceObserver(
        tracer_provider=telemetry.tracer_provider,
        metrics=metrics,
        sanitizer=sanitizer,
        follow_parent=True,  # a model call is traced inside its traced llm stage only
    )

    def wrap_llm(llm: Any) -> Any:
        # the inference span sees what the stage sees: an injected fault fails the model call
        llm = ObservedLLM(faults.guard("llm", llm, ["generate", "stream"]), inference, config.llm)
        if tel.llm_cache_size <= 0:
            return llm
        cache: ObservedTTLCache[str, Any] = ObservedTTLCache(
            tel.llm_cache_size, tel.llm_cache_ttl, name="llm_response", debugger=caches
        )
        return CachedLLM(llm, cache)

    pipeline = build_pipeline(
        config,
        observer=debugger,
        wrap_embedder=wrap_embedder,
        wrap_llm=wrap_llm,
        wrap_stt=lambda stt: faults.guard("stt", stt, ["transcribe"]),
        wrap_tts=lambda tts: faults.guard("tts", tts, ["synthesize"]),
        llm_request_headers=trace_headers,  # a model server sees the inference span
        on_turn_wait=metrics.turn_queue_wait.observe,
        on_turn_shed=lambda reason: metrics.turns_shed.labels(reason=bounded(reason, SHED)).inc(),
        wrap_memory_store=lambda store: faults.guard(
            "memory_store", store, ["retrieve", "add", "find", "clear", "import_data"]
        ),
        on_evict=lambda _owner, n: metrics.memory_evictions.inc(n),
        on_memory_write=memory_write_report(metrics),
    )
    snapshots = MemorySnapshotEmitter(
        pipeline.memory,
        snapshot_dir=config.snapshots_dir,
        interval=tel.snapshot_interval,
        enabled=tel.enabled,
        metrics=metrics,
        max_files=tel.snapshot_max_files,
        max_bytes=tel.snapshot_max_bytes,
        tracer_provider=telemetry.tracer_provider,
        sanitizer=sanitizer,  # snapshot files are redacted like spans and logs
        guard=WriteGuard("snapshots", metrics=metrics, room=disk.telemetry_may_write),
    )
    pipeline.memory.add_operation_listener(snapshots.after_memory_operation)
    backend, why = pipeline.llm_choice
    log.info("llm backend: %s (%s)", backend, why)
    watch_memory_size(metrics, pipeline)
    if pipeline.admission is not None:
        admission = pipeline.admission
        metrics.turn_queue_depth.set_function(lambda: admission.depth)
    watchdog = CodaWatchdog(
        [*faults.wrap_all(pipeline.components), disk],
        required=[c.name for c in pipeline.components],  # a low disk degrades, never fails
        check_interval=tel.health_interval,
        heartbeat_timeout=tel.heartbeat_timeout,
        failure_threshold=tel.failure_threshold,
        max_restarts=tel.max_restarts,
        restart_period=tel.restart_period,
        probe_backoff_max=tel.probe_backoff_max,
        metrics=metrics,
        leak_detector=LeakDetector(
            window=tel.leak_window,
            min_samples=tel.leak_min_samples,
            slope_threshold_bytes_per_s=tel.leak_slope_bytes_per_s,
            restart_on_leak=tel.restart_on_leak,
            metrics=metrics,
        ),
    )
    control = AppDebugControl(
        debugger=debugger,
        snapshots=snapshots,
        caches=caches,
        watchdog=watchdog,
        faults=faults,
        run_turn=pipeline.manager.process_guarded,
        interrupt=pipeline.manager.interrupt,
        allow_fault_injection=config.server.allow_fault_injection,
    )
    hub = DebugHub(
        control,
        metrics=metrics,
        cache_stats_interval=tel.cache_stats_interval,
        health_interval=tel.health_interval,
        allow_fault_injection=config.server.allow_fault_injection,
    )
    debugger.add_listener(hub)
    snapshots.add_listener(hub.on_memory_snapshot)
    watchdog.add_listener(hub.publish_health_status)
    return App(
        config=config,
        pipeline=pipeline,
        metrics=metrics,
        telemetry=telemetry,
        debugger=debugger,
        cache_debugger=caches,
        snapshots=snapshots,
        watchdog=watchdog,
        faults=faults,
        hub=hub,
        outputs={
            "traces": telemetry.exporter_description,
            "conversation logs": str(config.pipeline_logs_dir),
            "memory snapshots": str(config.snapshots_dir),
            "memory database": str(config.memory_db_path),
            "trace store": str(config.trace_store_path) if trace_store else "off",
        },
        trace_store=trace_store,
    )
