"""The pipeline debugger: one trace per turn, one span per stage, listeners for everything else.

    from coda_otel.pipeline import ConversationPipelineDebugger, PipelineMetrics

    debugger = ConversationPipelineDebugger(listeners=[PipelineMetrics(metrics)])
    with debugger.conversation(session_id="s1", turn=1) as conv:
        async with conv.stage("llm", {"query": text}) as st:
            st.set_output({"response": answer})

Modules: ``debugger`` (the entry point), ``scopes`` (the conversation and stage scopes it
hands out), ``noop`` (the scopes used when debugging is off), ``errors`` (how a failing stage
is recorded), ``metrics_listener`` (stage events into Prometheus), ``conversation_log`` (one
JSON file per turn, written off the hot path), ``genai`` (the model call's GenAI attributes and
a turn's ``coda.latency.*``: ``conv.set_latency({...})`` puts voice-to-voice latency and its
breakdown on the root span, the log, the metrics and the WebSocket).
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
