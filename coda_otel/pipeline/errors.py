"""How a stage's outcome and failure are described on its span and in its record.

Used by :mod:`coda_otel.pipeline.conversation` when a stage or a turn ends::

    status = status_of(exc)                    # "ok", "error" or "cancelled"
    if status == "error":
        record_failure(span, exc, record, sanitizer)   # exception event, error.type, ERROR status
    elif exc is not None:
        span.add_event("cancelled", {"coda.cancelled_by": error_type(exc)})
    same_failure(wrapper, recorded)            # True when `wrapper` is (or wraps) `recorded`

Stack traces are bounded to :data:`STACK_LIMIT` characters, keeping the most recent frames.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from opentelemetry.trace import Span, Status, StatusCode

from coda_otel.events import Status as Outcome

if TYPE_CHECKING:
    from coda_otel.pipeline.conversation_log import StageRecord
    from coda_otel.sanitize import Sanitizer

#: Characters of an exception's stack trace kept (and redacted on the loop) per failure.
STACK_LIMIT = 4000
_STACK_CUT = "[earlier frames truncated]\n"
_MAX_CHAIN = 8  # exception wrappers followed back to the stage's own failure


def status_of(exc: BaseException | None) -> Outcome:
    if exc is None:
        return "ok"
    return "error" if isinstance(exc, Exception) else "cancelled"  # CancelledError, interrupts


def error_type(exc: BaseException) -> str:
    """Semantic-convention ``error.type``: the exception's fully qualified class name."""
    cls = type(exc)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def same_failure(exc: BaseException, recorded: BaseException | None) -> bool:
    """True when ``exc`` is ``recorded`` or wraps it (``raise StageError(...) from exc``)."""
    seen: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if seen is None:
            return False
        if seen is recorded:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def bounded_stack(exc: BaseException) -> str:
    """The formatted traceback, keeping its most recent end within :data:`STACK_LIMIT`."""
    stack = "".join(traceback.format_exception(exc))
    if len(stack) <= STACK_LIMIT:
        return stack
    return _STACK_CUT + stack[len(stack) - STACK_LIMIT + len(_STACK_CUT) :]


def record_failure(
    span: Span, exc: BaseException, record: StageRecord, sanitizer: Sanitizer
) -> None:
    """Put a failure on ``span`` (exception event, error.type, ERROR status) and ``record``."""
    message = sanitizer.text(str(exc))
    stack = bounded_stack(exc)
    span.record_exception(
        exc,
        attributes={
            "exception.message": message,
            "exception.stacktrace": sanitizer.text(stack, STACK_LIMIT),
        },
    )
    span.set_attribute("error.type", error_type(exc))
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {message[:200]}"))
    record.error_type = type(exc).__name__  # short: a bounded metrics label
    record.error_message = message
    record.traceback = stack
