"""Component health: heartbeats, supervised restarts, leak detection and fault injection.

    from coda_otel.health import CodaWatchdog

    watchdog = CodaWatchdog([stt, llm, tts], check_interval=5.0, metrics=metrics)
    task = asyncio.create_task(watchdog.start())     # components: coda_otel.protocols.Component
    watchdog.get_health_status()["overall_health"]   # what /health answers
    watchdog.stop(); await task

Modules: ``watchdog`` (the supervisor), ``causes`` (resource, overload or fault: what a
restart can fix), ``state`` (one component's figures and their transitions), ``status``
(reports, listeners and the up gauges), ``recovery`` (restart limits and backoff), ``leak``
(memory growth by least squares), ``faults`` (crash/hang/slow/unhealthy/leak, for drills).
"""

from __future__ import annotations

from coda_otel.health.faults import FaultInjector
from coda_otel.health.leak import LeakDetector
from coda_otel.health.watchdog import CodaWatchdog

__all__ = ["CodaWatchdog", "FaultInjector", "LeakDetector"]
