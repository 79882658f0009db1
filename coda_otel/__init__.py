"""coda-otel: OpenTelemetry tracing and Prometheus metrics for conversational AI pipelines.

    import coda_otel

    telemetry = coda_otel.configure()                        # OTEL_* variables, local files default
    metrics = coda_otel.CodaMetrics()                         # one registry, every coda metric
    debugger = coda_otel.ConversationPipelineDebugger(
        tracer_provider=telemetry.tracer_provider,
        listeners=[coda_otel.PipelineMetrics(metrics)],
    )
    with debugger.conversation(session_id="s1", turn=1) as conv:
        async with conv.stage("llm", {"query": text}) as st:
            st.set_output({"response": answer})

Names are imported lazily, so ``import coda_otel`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "configure": "coda_otel.tracing.setup",
    "Telemetry": "coda_otel.tracing.setup",
    "CodaMetrics": "coda_otel.metrics",
    "ConversationPipelineDebugger": "coda_otel.pipeline.debugger",
    "PipelineMetrics": "coda_otel.pipeline.metrics_listener",
    "Sanitizer": "coda_otel.sanitize",
    "read_log": "coda_otel.pipeline.conversation_log",
    "CacheDebugger": "coda_otel.cache.debugger",
    "CachedEmbedder": "coda_otel.cache.embedder",
    "ObservedTTLCache": "coda_otel.cache.observed",
    "MemorySnapshotEmitter": "coda_otel.snapshots.emitter",
    "CodaWatchdog": "coda_otel.health.watchdog",
    "LeakDetector": "coda_otel.health.leak",
    "FaultInjector": "coda_otel.health.faults",
    "DebugHub": "coda_otel.ws.hub",
    "StageEvent": "coda_otel.events",
    "ConversationEvent": "coda_otel.events",
}

__all__ = [
    "CacheDebugger",
    "CachedEmbedder",
    "CodaMetrics",
    "CodaWatchdog",
    "ConversationEvent",
    "ConversationPipelineDebugger",
    "DebugHub",
    "FaultInjector",
    "LeakDetector",
    "MemorySnapshotEmitter",
    "ObservedTTLCache",
    "PipelineMetrics",
    "Sanitizer",
    "StageEvent",
    "Telemetry",
    "__version__",
    "configure",
    "read_log",
]

if TYPE_CHECKING:
    from coda_otel.cache.debugger import CacheDebugger
    from coda_otel.cache.embedder import CachedEmbedder
    from coda_otel.cache.observed import ObservedTTLCache
    from coda_otel.events import ConversationEvent, StageEvent
    from coda_otel.health.faults import FaultInjector
    from coda_otel.health.leak import LeakDetector
    from coda_otel.health.watchdog import CodaWatchdog
    from coda_otel.metrics import CodaMetrics
    from coda_otel.pipeline.conversation_log import read_log
    from coda_otel.pipeline.debugger import ConversationPipelineDebugger
    from coda_otel.pipeline.metrics_listener import PipelineMetrics
    from coda_otel.sanitize import Sanitizer
    from coda_otel.snapshots.emitter import MemorySnapshotEmitter
    from coda_otel.tracing.setup import Telemetry, configure
    from coda_otel.ws.hub import DebugHub


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'coda_otel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
