"""The pipeline debugger: one trace per conversation, one span per stage, a JSON log per turn.

It satisfies the pipeline's observer protocol structurally (``coda_lite.pipeline.observer``), so the
composition root passes it where the pipeline expects an observer::

    dbg = ConversationPipelineDebugger(output_dir=Path("logs"), listeners=[metrics_listener])
    with dbg.conversation(session_id="s1", turn=3) as conv:        # root span "conversation"
        async with conv.stage("llm", {"prompt": prompt}) as st:     # child span "llm"
            reply = await llm.generate(prompt)
            st.set_output({"response": reply})
            st.set_llm_usage(model="llama3", input_tokens=812, output_tokens=64)
    conv.conversation_id, conv.trace_id                            # trace_id: 32 hex or None

``with conv.stage(...)`` also works synchronously (in a worker thread). The reported-stage API keeps
one current conversation: ``start_conversation()``, ``log_stage(name, input, output,
{"duration_ms": ...})``, ``end_conversation()``. ``dbg.enabled = False`` makes every scope a
shared no-op; ``dbg.capture_content = True`` puts (redacted) content previews on spans.
``stall_budgets`` ({stage: seconds}) reports a stage running that long without progress
while it runs (:mod:`coda_otel.pipeline.stalls`): a span event, ``on_stage_stalled`` to
listeners.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace

from coda_otel import env
from coda_otel.events import ConversationEvent, PipelineListener, StageEvent, StallEvent
from coda_otel.pipeline.conversation_log import ConversationLogWriter, StageRecord, build_log
from coda_otel.pipeline.reported import report_stage
from coda_otel.pipeline.scopes import Conversation, DisabledConversation
from coda_otel.pipeline.stalls import StallWatcher
from coda_otel.sanitize import Sanitizer

logger = logging.getLogger(__name__)

__all__ = ["ConversationPipelineDebugger"]


class ConversationPipelineDebugger:
    """Turns pipeline scopes into spans, listener events and conversation logs."""

    def __init__(
        self,
        enabled: bool = True,
        output_dir: Path | str | None = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        listeners: Iterable[PipelineListener] = (),
        sanitizer: Sanitizer | None = None,
        log_max_files: int = 200,
        log_max_bytes: int = 50 * 2**20,
        save_logs: bool = True,
        stall_budgets: Mapping[str, float] | None = None,
    ) -> None:
        from coda_otel import __version__

        self.enabled = enabled
        self.logger = logger
        self.output_dir = (
            Path(output_dir) if output_dir else env.coda_home() / env.PIPELINE_LOGS_DIR
        )
        self.sanitizer = sanitizer if sanitizer is not None else Sanitizer.from_env()
        self.tracer = trace.get_tracer("coda_otel.pipeline", __version__, tracer_provider)
        self.listeners: tuple[PipelineListener, ...] = tuple(listeners)
        self.save_logs = save_logs
        self.log_writer = ConversationLogWriter(
            self.output_dir, max_files=log_max_files, max_bytes=log_max_bytes
        )
        #: In-flight stages; one running past its budget is reported while it runs.
        self.stalls = StallWatcher(stall_budgets)
        self._lock = threading.Lock()
        self._current: Conversation | None = None
        self.current_conversation_id: str | None = None

    # --- settings ------------------------------------------------------------------------
    @property
    def capture_content(self) -> bool:
        return self.sanitizer.capture_content

    @capture_content.setter
    def capture_content(self, value: bool) -> None:
        self.sanitizer.capture_content = bool(value)

    def add_listener(self, listener: PipelineListener) -> None:
        """Add a listener (copy-on-write, safe while conversations run)."""
        self.listeners = (*self.listeners, listener)

    def remove_listener(self, listener: PipelineListener) -> None:
        self.listeners = tuple(item for item in self.listeners if item is not listener)

    # --- natural form ----------------------------------------------------------------------
    def conversation(
        self,
        *,
        session_id: str | None = None,
        turn: int = 1,
        conversation_id: str | None = None,
    ) -> Conversation | DisabledConversation:
        """A context manager for one turn; ``stage()`` on it opens the stage scopes."""
        cid = conversation_id or uuid.uuid4().hex
        if not self.enabled:
            return DisabledConversation(cid)
        return Conversation(self, cid, session_id, turn)

    # --- reported-stage API (one current conversation) ---------------------------------------
    def start_conversation(self, conversation_id: str | None = None) -> str:
        """Start tracking a new conversation (ends an unfinished one first) and return its id."""
        cid = conversation_id or uuid.uuid4().hex
        with self._lock:
            previous, self._current = self._current, None
            self.current_conversation_id = cid
        if previous is not None:
            previous.finish(None, save=True)
        if self.enabled:
            conv = Conversation(self, cid, None, 1, attach=False)
            conv.__enter__()
            with self._lock:
                self._current = conv
        self.logger.info("Starting conversation: %s", cid)
        return cid

    def log_stage(
        self,
        stage_name: str,
        input_data: Any,
        output_data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Record a finished stage (``metadata["duration_ms"]`` gives its length)."""
        if not self.enabled:
            return None
        with self._lock:
            conv = self._current
        if conv is None:
            self.start_conversation()
            with self._lock:
                conv = self._current
            if conv is None:
                return None
        record = report_stage(conv, stage_name, input_data, output_data, dict(metadata or {}))
        self.logger.info(
            "Stage: %s | Duration: %.1fms | Input size: %d | Output size: %d",
            stage_name,
            record.duration_s * 1000,
            record.input_size,
            record.output_size,
        )
        return record.to_log(self.sanitizer, self.sanitizer.capture_content, conv.conversation_id)

    def end_conversation(self, save: bool = True) -> dict[str, Any] | None:
        """End the current conversation; returns its log record (stages, total duration)."""
        with self._lock:
            conv, self._current = self._current, None
        if conv is None or not self.enabled:
            return None
        return conv.finish(None, save=save)

    # --- plumbing used by the scopes --------------------------------------------------------
    def emit_stage(self, event: StageEvent) -> None:
        for listener in self.listeners:
            try:
                listener.on_stage_end(event)
            except Exception:
                logger.exception("pipeline listener %r failed on a stage", listener)

    def emit_conversation(self, event: ConversationEvent) -> None:
        for listener in self.listeners:
            try:
                listener.on_conversation_end(event)
            except Exception:
                logger.exception("pipeline listener %r failed on a conversation", listener)

    def emit_stall(self, event: StallEvent) -> None:
        for listener in self.listeners:
            hook = getattr(listener, "on_stage_stalled", None)
            if hook is None:
                continue
            try:
                hook(event)
            except Exception:
                logger.exception("pipeline listener %r failed on a stall", listener)

    def save(
        self, records: list[StageRecord], header: dict[str, Any], *, build_now: bool, save: bool
    ) -> dict[str, Any] | None:
        """Queue the conversation log, built on the writer thread unless ``build_now``."""
        sanitizer, capture = self.sanitizer, self.sanitizer.capture_content
        if build_now:
            log = build_log(header, records, sanitizer, capture)
            if save and self.save_logs:
                self.log_writer.submit(log)
            return log
        if save and self.save_logs:
            self.log_writer.submit(lambda: build_log(header, records, sanitizer, capture))
        return None

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait for queued conversation logs to be written."""
        return self.log_writer.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> bool:
        """End the reported-stage API's current conversation, write queued logs, stop the writer."""
        with self._lock:
            conv, self._current = self._current, None
        if conv is not None:
            conv.finish(None, save=True)
        return self.log_writer.close(timeout_s)
