"""One pipeline stage: the debugger's stage scope against a bare SDK span and no instrumentation.

    python -m benchmarks.run --only stage

All variants run the same async body (the llm stage's shape: query and three memories in,
a reply out) on one event loop, in alternating rounds:

* debugger: ``async with conv.stage("llm", inputs) as st`` on a real SDK ``TracerProvider``
  with a ``BatchSpanProcessor`` into an exporter that discards (export is off the hot path),
  and the Prometheus ``PipelineMetrics`` listener on, with a stall budget on the stage (its
  timer armed and cancelled each time, as served); budget 1.5x the bare SDK span;
* bare SDK span: ``with tracer.start_as_current_span("llm")`` on the same provider;
* none: the body alone;
* tracing off (``enabled=False``, the metrics listener still on: switching tracing off stops
  spans only, a stage still feeds metrics, the WebSocket and the log): budget at most half
  the traced stage;
* a hand-written span with the debugger's attributes and the same histogram observation
  (what instrumenting by hand would cost): budget 1.3x.

Each round opens one conversation (root span) outside the timer and times ``number`` stages
in it, as the pipeline nests them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from benchmarks.common import Result, run_async
from coda_otel.metrics import CodaMetrics
from coda_otel.pipeline.debugger import ConversationPipelineDebugger
from coda_otel.pipeline.metrics_listener import PipelineMetrics

QUERY = "Where do I live and what is my favourite food?"
CONTEXT = [
    {"id": f"{i:032x}", "content": fact, "score": 0.6 - i / 10, "topics": ["location"]}
    for i, fact in enumerate(("I live in Lisbon.", "My favourite food is bacalhau.", "I am Ada."))
]
INPUTS = {"query": QUERY, "context": CONTEXT}
REPLY = {"response": "You told me you live in Lisbon."}


class DiscardExporter(SpanExporter):
    """Accepts every batch and keeps nothing (the export itself is not what is measured)."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


async def body() -> dict[str, str]:
    """The stage's own work (kept trivial: only the instrumentation differs)."""
    return REPLY


Variant = tuple[Callable[[], AbstractContextManager[Any]], Callable[[], Awaitable[Any]]]


async def _time_rounds(variants: dict[str, Variant], number: int, rounds: int) -> dict[str, float]:
    """Median seconds per stage of each variant; each round alternates all variants."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(rounds + 1):  # round 0 warms up
        for name, (scope, stage) in variants.items():
            with scope():
                t0 = time.perf_counter()
                for _ in range(number):
                    await stage()
                elapsed = (time.perf_counter() - t0) / number
            if r:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


async def _measure(number: int, rounds: int) -> dict[str, float]:
    provider = TracerProvider()
    exporter = DiscardExporter()
    # A queue that holds a whole round: no span is dropped (a drop is cheaper than a keep).
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=2 * number + 64))
    tracer = provider.get_tracer("bench")
    metrics = CodaMetrics(CollectorRegistry(), process_collector=False)
    with tempfile.TemporaryDirectory(prefix="coda-bench-") as tmp:
        dbg = ConversationPipelineDebugger(
            output_dir=tmp,
            tracer_provider=provider,
            listeners=[PipelineMetrics(metrics)],
            save_logs=False,
            stall_budgets={"llm": 5.0},  # as served: each stage arms (and cancels) a stall timer
        )
        off = ConversationPipelineDebugger(
            enabled=False,
            output_dir=tmp,
            listeners=[PipelineMetrics(metrics)],
            save_logs=False,
            stall_budgets={"llm": 5.0},
        )
        current: dict[str, Any] = {}

        def conversation(d: ConversationPipelineDebugger) -> Callable[[], Any]:
            def scope() -> Any:
                conv = d.conversation(session_id="bench")
                current["conv"] = conv
                return conv

            return scope

        async def debugger_stage() -> None:
            async with current["conv"].stage("llm", INPUTS) as st:
                st.set_output(await body())

        async def sdk_stage() -> None:
            with tracer.start_as_current_span("llm"):
                await body()

        async def bare() -> None:
            await body()

        hist = metrics.stage_duration.labels(stage="llm")

        async def manual_stage() -> None:
            # What a careful hand-written equivalent records: the same span attributes and
            # the same histogram observation with a trace-id exemplar.
            attrs = {
                "coda.stage": "llm",
                "coda.input.size": 120,
                "gen_ai.operation.name": "chat",
                "gen_ai.conversation.id": "0" * 32,
            }
            with tracer.start_as_current_span("llm", attributes=attrs) as span:
                t0 = time.perf_counter()
                await body()
                span.set_attributes({"coda.output.size": 31, "coda.stage.status": "ok"})
                trace_id = format(span.get_span_context().trace_id, "032x")
                hist.observe(time.perf_counter() - t0, exemplar={"trace_id": trace_id})

        variants: dict[str, Variant] = {
            "debugger": (conversation(dbg), debugger_stage),
            "sdk": (lambda: tracer.start_as_current_span("conversation"), sdk_stage),
            "manual": (lambda: tracer.start_as_current_span("conversation"), manual_stage),
            "none": (lambda: tracer.start_as_current_span("conversation"), bare),
            "disabled": (conversation(off), debugger_stage),
        }
        try:
            return await _time_rounds(variants, number, rounds)
        finally:
            dbg.close()
            off.close()
            provider.shutdown()


def run(quick: bool) -> list[Result]:
    t = run_async(_measure(2_000 if quick else 10_000, 3 if quick else 9))
    note = "real SDK provider, BatchSpanProcessor to a discarding exporter, metrics listener on"
    return [
        Result(
            "stage",
            "debugger stage (tracing + metrics)",
            t["debugger"],
            "s",
            "bare SDK span",
            t["sdk"],
            budget_ratio=1.5,
            note=note,
        ),
        Result(
            "stage",
            "debugger stage (tracing + metrics)",
            t["debugger"],
            "s",
            "no instrumentation",
            t["none"],
            note=note,
        ),
        Result(
            "stage",
            "debugger stage (tracing + metrics)",
            t["debugger"],
            "s",
            "hand-written span + attributes + histogram",
            t["manual"],
            budget_ratio=1.3,
            note="the same span attributes and exemplar observation, written inline",
        ),
        Result("stage", "bare SDK span", t["sdk"], "s", "no instrumentation", t["none"]),
        Result(
            "stage",
            "tracing-off debugger stage (metrics on)",
            t["disabled"],
            "s",
            "debugger stage (tracing + metrics)",
            t["debugger"],
            budget_ratio=0.5,
            note="no span; the stage still reaches the metrics listener and its stall watch",
        ),
        Result(
            "stage",
            "tracing-off debugger stage (metrics on)",
            t["disabled"],
            "s",
            "no instrumentation",
            t["none"],
        ),
    ]
