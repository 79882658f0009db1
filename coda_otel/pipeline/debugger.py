"""The pipeline debugger: one trace per turn, one span per stage, a JSON log per turn.

It satisfies the pipeline's observer protocol structurally (``coda_lite.pipeline.observer``), so the
composition root passes it where the pipeline expects an observer::

    dbg = ConversationPipelineDebugger(enabled=True, log_level="INFO", output_dir=Path("logs"),
                                       listeners=[metrics_listener])
    with dbg.conversation(session_id="s1", turn=3) as conv:        # root span "conversation"
        async with conv.stage("llm", {"prompt": prompt}) as st:     # child span "llm"
            reply = await llm.generate(prompt)
            st.set_output({"response": reply})
            st.set_llm_usage(model="llama3", input_tokens=812, output_tokens=64)
    conv.conversation_id, conv.trace_id                            # trace_id: 32 hex or None

``with conv.stage(...)`` also works synchronously (in a worker thread). The reported-stage API
keeps one current turn: ``start_conversation()``, ``log_stage(name, input, output,
{"duration_ms": ...})``, ``end_conversation()`` (the same :class:`Conversation`, its stages
reported after they ran).

Each switch switches one thing: ``dbg.tracing = False`` (also ``dbg.enabled``, the constructor's
``enabled``) stops spans only; listener events (metrics, the WebSocket), conversation logs
(``save_logs``) and stall reports go on. ``capture_content = True`` puts (redacted) content
previews on spans; ``log_level`` sets this tool's own logger (``coda_otel.pipeline``) only.
``log_guard`` (a :class:`~coda_otel.write_guard.WriteGuard`) keeps the disk's reserve for the
logs. ``stall_budgets`` ({stage: seconds}) reports a stage running that long without progress
while it runs (:mod:`coda_otel.pipeline.stalls`): a span event, ``on_stage_stalled`` to
listeners.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace

from coda_otel import env
from coda_otel.events import PipelineListener
from coda_otel.pipeline.conversation import Conversation, TurnRecorder
from coda_otel.pipeline.conversation_log import ConversationLogWriter, TurnLogs
from coda_otel.pipeline.stalls import Clock, StallWatcher
from coda_otel.sanitize import Sanitizer
from coda_otel.write_guard import WriteGuard

logger = logging.getLogger(__name__)
#: The logger ``log_level`` sets: the parent of every pipeline module's logger.
TOOL_LOGGER = "coda_otel.pipeline"

__all__ = ["ConversationPipelineDebugger"]


class ConversationPipelineDebugger:
    """Turns pipeline scopes into spans, listener events and conversation logs."""

    def __init__(
        self,
        enabled: bool = True,
        output_dir: Path | str | None = None,
        *,
        log_level: int | str | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        listeners: Iterable[PipelineListener] = (),
        sanitizer: Sanitizer | None = None,
        log_max_files: int = 200,
        log_max_bytes: int = 50 * 2**20,
        save_logs: bool = True,
        stall_budgets: Mapping[str, float] | None = None,
        clock: Clock = time.monotonic,
        log_guard: WriteGuard | None = None,
    ) -> None:
        from coda_otel import __version__

        if log_level is not None:  # this tool's logger only, never the root or coda_otel
            logging.getLogger(TOOL_LOGGER).setLevel(log_level)
        self.logger = logger
        self.output_dir = (
            Path(output_dir) if output_dir else env.coda_home() / env.PIPELINE_LOGS_DIR
        )
        self.sanitizer = sanitizer if sanitizer is not None else Sanitizer.from_env()
        self.log_writer = ConversationLogWriter(
            self.output_dir, max_files=log_max_files, max_bytes=log_max_bytes, guard=log_guard
        )
        #: In-flight stages; one running past its budget is reported while it runs.
        self.stalls = StallWatcher(stall_budgets, clock=clock)
        self.recorder = TurnRecorder(
            trace.get_tracer("coda_otel.pipeline", __version__, tracer_provider),
            self.sanitizer,
            self.stalls,
            TurnLogs(self.log_writer, self.sanitizer, enabled=save_logs),
            listeners=listeners,
            tracing=enabled,
        )
        self._lock = threading.Lock()
        self._current: Conversation | None = None
        self.current_conversation_id: str | None = None

    # --- switches ------------------------------------------------------------------------
    @property
    def tracing(self) -> bool:
        """Whether turns make spans; off, everything else (events, logs, stalls) goes on."""
        return self.recorder.tracing

    @tracing.setter
    def tracing(self, value: bool) -> None:
        self.recorder.tracing = bool(value)

    enabled = tracing  # the design document's name for the tracing switch

    @property
    def save_logs(self) -> bool:
        """Whether each turn's conversation log is written."""
        return self.recorder.logs.enabled

    @save_logs.setter
    def save_logs(self, value: bool) -> None:
        self.recorder.logs.enabled = bool(value)

    @property
    def capture_content(self) -> bool:
        return self.sanitizer.capture_content

    @capture_content.setter
    def capture_content(self, value: bool) -> None:
        self.sanitizer.capture_content = bool(value)

    @property
    def listeners(self) -> tuple[PipelineListener, ...]:
        return self.recorder.listeners

    def add_listener(self, listener: PipelineListener) -> None:
        """Add a listener (copy-on-write, safe while turns run)."""
        self.recorder.add_listener(listener)

    def remove_listener(self, listener: PipelineListener) -> None:
        self.recorder.remove_listener(listener)

    # --- natural form ----------------------------------------------------------------------
    def conversation(
        self,
        *,
        session_id: str | None = None,
        turn: int = 1,
        conversation_id: str | None = None,
    ) -> Conversation:
        """A context manager for one turn; ``stage()`` on it opens the stage scopes."""
        return Conversation(self.recorder, conversation_id or uuid.uuid4().hex, session_id, turn)

    # --- reported-stage API (one current turn) ---------------------------------------------
    def start_conversation(self, conversation_id: str | None = None) -> str:
        """Start tracking a new turn (ends an unfinished one first) and return its id."""
        cid = conversation_id or uuid.uuid4().hex
        conv = Conversation(self.recorder, cid, attach=False)
        conv.__enter__()
        with self._lock:
            previous, self._current = self._current, conv
            self.current_conversation_id = cid
        if previous is not None:
            previous.finish(None)
        self.logger.info("Starting conversation: %s", cid)
        return cid

    def log_stage(
        self,
        stage_name: str,
        input_data: Any,
        output_data: Any,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Record a finished stage (``metadata["duration_ms"]`` gives its length)."""
        with self._lock:
            conv = self._current
        if conv is None:
            self.start_conversation()
            with self._lock:
                conv = self._current
            assert conv is not None
        record = conv.report(stage_name, input_data, output_data, metadata)
        self.logger.info(
            "Stage: %s | Duration: %.1fms | Input size: %d | Output size: %d",
            stage_name,
            record.duration_s * 1000,
            record.input_size,
            record.output_size,
        )
        return record.to_log(self.sanitizer, self.sanitizer.capture_content, conv.conversation_id)

    def end_conversation(self, save: bool = True) -> dict[str, Any] | None:
        """End the current turn; returns its log record (stages, total duration)."""
        with self._lock:
            conv, self._current = self._current, None
        return None if conv is None else conv.finish(None, save=save)

    # --- shutdown ----------------------------------------------------------------------------
    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait for queued conversation logs to be written."""
        return self.log_writer.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> bool:
        """End the reported-stage API's current turn, write queued logs, stop the writer."""
        with self._lock:
            conv, self._current = self._current, None
        if conv is not None:
            conv.finish(None)
        return self.log_writer.close(timeout_s)
