"""The pipeline debugger: one trace per turn, one span per stage, listeners for everything else.

    from coda_otel.pipeline import ConversationPipelineDebugger, PipelineMetrics

    debugger = ConversationPipelineDebugger(listeners=[PipelineMetrics(metrics)])
    with debugger.conversation(session_id="s1", turn=1) as conv:
        async with conv.stage("llm", {"query": text}) as st:
            st.set_output({"response": answer})
    debugger.tracing = False      # spans stop; metrics, WebSocket events, logs, stalls go on

How the modules fit: ``debugger`` is the entry point and its switches; it hands each turn a
``TurnRecorder`` (tracer, sanitizer, listeners, stall watcher, log saver) and builds the turn's
``Conversation`` from ``conversation`` (the turn, its stages, how it ended, stalls reported on
the stalled stage's own span). That module uses, and is never imported by: ``errors`` (how a
failure is put on a span and a record), ``genai`` (the model call's GenAI attributes, a turn's
``coda.latency.*``), ``stalls`` (stages past their budget, while they run), and
``conversation_log`` (one JSON file per turn, built and written off the hot path).
``metrics_listener`` turns the listener events into Prometheus metrics.
"""

from __future__ import annotations

from coda_otel.pipeline.conversation_log import ConversationLogWriter, latest_log, read_log
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.pipeline.metrics_listener import PipelineMetrics

__all__ = [
    "ConversationLogWriter",
    "ConversationPipelineDebugger",
    "PipelineMetrics",
    "latest_log",
    "read_log",
]
