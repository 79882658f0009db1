"""Adapters that observe other voice-agent frameworks with coda-otel's tools.

Each integration turns the framework's own events into coda-otel turns and stages (the
:class:`~coda_otel.pipeline.ConversationPipelineDebugger`), so its traces, latency breakdown,
stalls, interruptions, metrics and debug console are the ones Coda Lite gets::

    from coda_otel.integrations.pipecat import CodaObserver      # needs pipecat-ai

    worker = PipelineWorker(pipeline, observers=[CodaObserver(debugger, metrics=metrics)])

Nothing here is imported by ``coda_otel`` itself: a framework is needed only by its adapter.
"""

from __future__ import annotations

__all__: list[str] = []
