"""coda-otel for Pipecat: a real Pipecat pipeline observed like Coda Lite.

One observer on the ``PipelineWorker`` gives each user turn a trace (root ``conversation`` with
``stt``, ``llm`` and ``tts`` spans), the voice-latency breakdown, stalls, interruptions and
Prometheus metrics; one call serves the debug WebSocket and console on an aiohttp app::

    from coda_otel.integrations.pipecat import CodaObserver, add_debug_routes

    debugger = ConversationPipelineDebugger(listeners=[PipelineMetrics(metrics), hub])
    worker = PipelineWorker(pipeline, observers=[CodaObserver(debugger, metrics=metrics)])
    add_debug_routes(web_app, hub, registry=metrics.registry)   # /ws, /debug/, /metrics

Modules: ``observer`` (frames into turns and stages), ``clock`` (the turn's instants and its
latency breakdown), ``service_metrics`` (``MetricsFrame`` into Prometheus), ``web`` (the
debug routes and the console's commands for a Pipecat app). Needs ``pipecat-ai``
(``pip install coda-lite[pipecat]``).
"""

from __future__ import annotations

from coda_otel.integrations.pipecat.clock import TurnClock
from coda_otel.integrations.pipecat.observer import CodaObserver, PipecatError
from coda_otel.integrations.pipecat.service_metrics import ServiceMetrics
from coda_otel.integrations.pipecat.web import (
    DEBUG_OPEN_PATHS,
    PipecatDebugControl,
    add_debug_routes,
    debug_app,
)

__all__ = [
    "DEBUG_OPEN_PATHS",
    "CodaObserver",
    "PipecatDebugControl",
    "PipecatError",
    "ServiceMetrics",
    "TurnClock",
    "add_debug_routes",
    "debug_app",
]
