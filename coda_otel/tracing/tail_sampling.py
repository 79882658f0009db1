"""Tail sampling in the process: whole turns kept or dropped by the Collector's policies.

With an OpenTelemetry Collector in between, it samples (deploy/otel-collector/config.yaml). With
none (traces to files, the one-process setup), setting ``CODA_TRACE_SAMPLE_PERCENT`` makes
:func:`coda_otel.tracing.configure` apply the same decision here, under the same policy names::

    errors       a span of the trace has status ERROR
    interrupted  a span has coda.turn.end_reason = "interrupted"
    slow         the trace lasted longer than CODA_TURN_LATENCY_BUDGET_MS (default 15000)
    baseline     CODA_TRACE_SAMPLE_PERCENT percent of the rest (decided by trace id)

By hand::

    policy = TailPolicy(baseline_percent=10, latency_budget_s=15)
    provider.add_span_processor(TailSamplingProcessor(policy, [BatchSpanProcessor(exporter)]))

Spans wait in memory until their trace's local root span ends; then the whole trace goes on to
the wrapped processors, or none of it. Nothing is lost silently: when more than
``max_pending_traces`` are unfinished, or at shutdown, undecided spans go on (kept).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from coda_otel import env

logger = logging.getLogger(__name__)

POLICIES = ("errors", "interrupted", "slow", "baseline")
END_REASON_ATTRIBUTE = "coda.turn.end_reason"
_ID_SPACE = 2**64  # the low 64 bits of a trace id are random (W3C trace context)


@dataclass(frozen=True)
class TailPolicy:
    """What a trace needs to be kept; see the module docstring."""

    baseline_percent: float = 10.0
    latency_budget_s: float = 15.0

    def __post_init__(self) -> None:
        if not 0 <= self.baseline_percent <= 100:
            raise ValueError(f"baseline_percent must be 0..100, got {self.baseline_percent}")
        if self.latency_budget_s <= 0:
            raise ValueError(f"latency_budget_s must be positive, got {self.latency_budget_s}")

    @classmethod
    def from_env(cls) -> TailPolicy | None:
        """The policy ``CODA_TRACE_SAMPLE_PERCENT`` asks for; ``None`` (keep all) when unset."""
        percent = env.first(env.CODA_TRACE_SAMPLE_PERCENT)
        if percent is None:
            return None
        budget_ms = env.first(env.CODA_TURN_LATENCY_BUDGET_MS) or "15000"
        try:
            return cls(float(percent), float(budget_ms) / 1000)
        except ValueError as exc:
            raise ValueError(
                f"{env.CODA_TRACE_SAMPLE_PERCENT}={percent!r}, "
                f"{env.CODA_TURN_LATENCY_BUDGET_MS}={budget_ms!r}: {exc}"
            ) from None

    def decide(self, spans: Sequence[ReadableSpan]) -> str | None:
        """The first policy that keeps this trace, or ``None`` to drop it."""
        if any(s.status.status_code is StatusCode.ERROR for s in spans):
            return "errors"
        if any((s.attributes or {}).get(END_REASON_ATTRIBUTE) == "interrupted" for s in spans):
            return "interrupted"
        start = min(s.start_time or 0 for s in spans)
        end = max(s.end_time or 0 for s in spans)
        if (end - start) / 1e9 > self.latency_budget_s:
            return "slow"
        context = spans[0].context
        trace_id = context.trace_id if context is not None else 0
        if trace_id % _ID_SPACE < self.baseline_percent / 100 * _ID_SPACE:
            return "baseline"
        return None


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


class TailSamplingProcessor(SpanProcessor):
    """Buffers each trace until its local root ends, then passes all of it on or none."""

    def __init__(
        self,
        policy: TailPolicy,
        downstream: Sequence[SpanProcessor],
        *,
        max_pending_traces: int = 2048,
        remembered_decisions: int = 4096,
    ) -> None:
        self.policy = policy
        self._downstream = tuple(downstream)
        self._max_pending = max_pending_traces
        self._remembered = remembered_decisions
        self._lock = threading.Lock()
        self._pending: OrderedDict[int, list[ReadableSpan]] = OrderedDict()
        self._decided: OrderedDict[int, bool] = OrderedDict()  # for spans ending after the root
        # traces per outcome: a policy name, "dropped", or "overflow" (passed on undecided)
        self.decisions: Counter[str] = Counter()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._downstream:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        trace_id = span.context.trace_id
        forward: list[ReadableSpan] = []
        with self._lock:
            if trace_id in self._decided:  # a late span follows its trace
                forward = [span] if self._decided[trace_id] else []
            else:
                self._pending.setdefault(trace_id, []).append(span)
                if _is_local_root(span):
                    forward = self._decide(trace_id, self._pending.pop(trace_id))
                elif len(self._pending) > self._max_pending:
                    _, forward = self._pending.popitem(last=False)  # undecided: kept
                    self.decisions["overflow"] += 1
        self._pass_on(forward)

    def _decide(self, trace_id: int, spans: list[ReadableSpan]) -> list[ReadableSpan]:
        """Call with the lock held: the spans to pass on (all or none)."""
        try:
            policy = self.policy.decide(spans)
        except Exception:  # a decision must never break the pipeline: keep the trace
            logger.exception("tail sampling decision failed; keeping the trace")
            policy = "errors"
        self.decisions[policy or "dropped"] += 1
        self._decided[trace_id] = policy is not None
        while len(self._decided) > self._remembered:
            self._decided.popitem(last=False)
        return spans if policy is not None else []

    def _pass_on(self, spans: list[ReadableSpan]) -> None:
        for span in spans:
            for processor in self._downstream:
                processor.on_end(span)

    def _release_pending(self) -> None:
        with self._lock:
            pending = [s for spans in self._pending.values() for s in spans]
            self._pending.clear()
        self._pass_on(pending)

    def shutdown(self) -> None:
        self._release_pending()
        for processor in self._downstream:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._downstream)


def describe(policy: TailPolicy) -> str:
    """One line for the start-up log."""
    return (
        f"tail sampling: errors, interrupted, slower than {policy.latency_budget_s:g}s, "
        f"{policy.baseline_percent:g}% of the rest"
    )


__all__ = ["POLICIES", "TailPolicy", "TailSamplingProcessor", "describe"]
