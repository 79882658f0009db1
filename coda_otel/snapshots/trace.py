"""Where a memory snapshot shows in the trace, when the snapshot is taken after its trigger.

    span = trace.get_current_span()                         # at the trigger (caller's thread)
    ...                                                     # later, on the writer thread:
    child = record_snapshot(tracer, span, attrs, start_ns)  # attrs include the counts
    ...; if child is not None: child.end()                  # after the file is written

The writer adds the ``memory_snapshot`` event (id, trigger, operation count, path, counts) to
the span that was current at the trigger if that span is still recording. If it has ended
meanwhile, the writer starts a short ``memory_snapshot`` span, child of that span, carrying
the same attributes and the event, and lasting from ``start_ns`` until the caller ends it;
so the event and its counts are always in the trace, never dropped on a closed span. If the
span ends during ``add_event`` (a microsecond race), the child span is made too: the event
may then appear twice, but is never lost. With no valid span at the trigger, nothing is
traced. A periodic (``interval``) snapshot gets a root span of its own, linked to the span
that was current at its trigger, so it never sits inside a user's turn nor outlives it.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

EVENT = "memory_snapshot"


def record_snapshot(
    tracer: trace.Tracer,
    span: trace.Span,
    attributes: Mapping[str, AttributeValue],
    start_ns: int,
    *,
    linked_only: bool = False,
) -> trace.Span | None:
    """Put the event on ``span`` (None returned) or on a new child span (returned, open).

    ``linked_only``: the snapshot is not part of ``span``'s work (a periodic snapshot that an
    operation of that turn merely triggered): a new root span, linked to ``span``, instead.
    """
    if linked_only:
        caller = span.get_span_context()
        root = tracer.start_span(
            EVENT,
            context=otel_context.Context(),
            attributes=attributes,
            links=[trace.Link(caller)] if caller.is_valid else None,
            start_time=start_ns,
        )
        root.add_event(EVENT, attributes)
        return root
    if span.is_recording():
        span.add_event(EVENT, attributes)
        if span.is_recording():  # still open after the call: the event landed
            return None
    if not span.get_span_context().is_valid:
        return None
    child = tracer.start_span(
        EVENT, context=trace.set_span_in_context(span), attributes=attributes, start_time=start_ns
    )
    child.add_event(EVENT, attributes)
    return child
