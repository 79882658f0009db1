"""One JSON file per turn (a "conversation log"), written off the event loop, in a bounded folder.

The pipeline debugger hands each finished turn to :class:`ConversationLogWriter`,
which builds and writes the record on its own thread (atomic write, then retention by count
and bytes), so a slow disk never delays a turn. File names come from validated ids only.
These are debug logs: the rename is atomic (never a torn file) but not fsync'd, so a power cut
may lose the newest ones; retention works from an in-memory index of the folder (one listing
at the first write and every ``relist_every`` writes), not a listing per write::

    writer = ConversationLogWriter(Path("~/.coda/pipeline_logs").expanduser())
    writer.submit(lambda: {"conversation_id": "c1", "stages": [...]})   # returns at once
    writer.flush(timeout_s=5)                                            # tests, shutdown
    record = read_log(writer.last_path)
    writer.close()

A turn hands its finished records to a :class:`TurnLogs` (the writer, the sanitizer and the
``save_logs`` switch), which builds the record on the writer's thread::

    logs = TurnLogs(writer, sanitizer)
    logs.save(header, records)                        # queued, built off the caller
    logs.save(header, records, build_now=True)        # built here and returned (log_stage API)
    logs.enabled = False                              # nothing written; build_now still builds

A record (schema ``coda.pipeline_log/1``)::

    {"schema", "conversation_id", "session_id", "turn", "status", "trace_id", "span_id",
     "started_at" (epoch s), "timestamp" (ISO end time), "total_duration_ms",
     "end_reason" ("completed", "error", "interrupted", "cancelled"),
     "interruption" (null, or who interrupted and how much of the answer was spoken),
     "stalls" ([{"stage", "budget_s", "idle_s", "running_s", ...}]: stages that stalled),
     "stages": [{"stage_name", "status", "started_at", "timestamp", "duration_ms",
                 "input", "output", "metadata" (+ "stalls": n when the stage stalled),
                 "trace_id", "span_id"}, ...]}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coda_otel.background import BackgroundWriter
from coda_otel.events import Status
from coda_otel.files import InvalidIdError, atomic_write_json, new_id, validate_id
from coda_otel.retention import RetentionIndex
from coda_otel.sanitize import Sanitizer
from coda_otel.write_guard import WriteGuard

logger = logging.getLogger(__name__)

SCHEMA = "coda.pipeline_log/1"
LOG_PATTERN = "pipeline-*.json"
#: Bytes one turn's log is expected to take (checked against the disk reserve).
LOG_SIZE_HINT = 16 * 1024
RecordFactory = Callable[[], Mapping[str, Any]]


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


@dataclass(slots=True)
class StageRecord:
    """One finished stage as the debugger saw it; content is sanitised only in :meth:`to_log`."""

    name: str
    status: Status
    started_at: float  # epoch seconds
    duration_s: float
    inputs: Any
    output: Any
    input_size: int
    output_size: int
    trace_id: str | None = None
    span_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None

    def to_log(self, sanitizer: Sanitizer, capture: bool, conversation_id: str) -> dict[str, Any]:
        """The stage's JSON-log entry: summaries by default, sanitised content with capture."""
        show = sanitizer.value if capture else sanitizer.summarize
        entry: dict[str, Any] = {
            "conversation_id": conversation_id,
            "stage_name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "timestamp": _iso(self.started_at),
            "duration_ms": round(self.duration_s * 1000, 3),
            "input": show(self.inputs),
            "output": show(self.output) if self.output is not None else None,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "metadata": sanitizer.value(self.metadata),
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }
        if self.error_type:
            entry["error_type"] = self.error_type
        return entry

    def error_entry(self, sanitizer: Sanitizer, conversation_id: str) -> dict[str, Any]:
        """The ``error`` stage record for a failed stage (message and traceback)."""
        ended = self.started_at + self.duration_s
        return {
            "conversation_id": conversation_id,
            "stage_name": "error",
            "status": "error",
            "started_at": ended,
            "timestamp": _iso(ended),
            "duration_ms": 0.0,
            "input": {"error": sanitizer.text(self.error_message or "")},
            "output": {"traceback": sanitizer.text(self.traceback or "", 4000)},
            "metadata": {"error_type": self.error_type, "stage": self.name},
            "trace_id": self.trace_id,
            "span_id": self.span_id,
        }


def build_log(
    header: Mapping[str, Any],
    records: list[StageRecord],
    sanitizer: Sanitizer,
    capture: bool,
) -> dict[str, Any]:
    """The whole turn's record (see the module docstring) from its finished stages."""
    cid = str(header["conversation_id"])
    total = header.get("total_duration_ms")
    stages: list[dict[str, Any]] = []
    for record in records:
        entry = record.to_log(sanitizer, capture, cid)
        entry["metadata"]["total_conversation_duration_ms"] = total
        stages.append(entry)
        if record.status == "error" and record.error_type and record.name != "error":
            stages.append(record.error_entry(sanitizer, cid))
    ended = float(header.get("ended_at") or time.time())
    return {"schema": SCHEMA, **header, "timestamp": _iso(ended), "stages": stages}


def log_file_id(conversation_id: object, when: datetime | None = None) -> str:
    """A safe, sortable file id: ``pipeline-<stamp>-<conversation id>``, or a fresh id."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%f")
    try:
        ident = f"pipeline-{stamp}-{validate_id(conversation_id)}"
        return validate_id(ident)
    except InvalidIdError:
        return new_id("pipeline")


class ConversationLogWriter:
    """Writes records on a background thread; ``submit`` never blocks (drops when full)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_files: int = 200,
        max_bytes: int = 50 * 2**20,
        queue_size: int = 256,
        relist_every: int = 100,
        guard: WriteGuard | None = None,
    ) -> None:
        if max_files < 1 or max_bytes < 1:
            raise ValueError("max_files and max_bytes must be positive")
        self.folder = Path(folder)
        self._root: Path | None = None
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.written = 0
        self.last_path: Path | None = None
        self.guard = guard if guard is not None else WriteGuard("conversation_logs")
        self._retention = RetentionIndex(
            self.folder, LOG_PATTERN, max_files=max_files, max_bytes=max_bytes,
            relist_every=relist_every,
        )  # fmt: skip
        self._writer: BackgroundWriter[RecordFactory | Mapping[str, Any]] = BackgroundWriter(
            "coda-conversation-log", self._write, queue_size=queue_size
        )

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def submit(self, record: RecordFactory | Mapping[str, Any]) -> bool:
        """Queue a record (or a function building it, run on the writer thread)."""
        if self._writer.closed:
            return False
        if not self._writer.submit(record):
            logger.warning("conversation log queue full; dropping a log")
            return False
        return True

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every submitted record is written; False on timeout."""
        return self._writer.flush(timeout_s)

    def close(self, timeout_s: float = 5.0) -> bool:
        """Write what is queued (bounded by ``timeout_s``) and stop the thread."""
        return self._writer.close(timeout_s)

    def _write(self, item: RecordFactory | Mapping[str, Any]) -> None:
        try:
            self._write_one(item)
        except OSError as exc:  # a full disk: counted, logged once per burst
            self.guard.failed(exc)
        except Exception:
            logger.exception("could not write a conversation log in %s", self.folder)

    def _write_one(self, item: RecordFactory | Mapping[str, Any]) -> None:
        record = item() if callable(item) else item
        if not isinstance(record, Mapping):
            raise TypeError(f"a conversation log record must be a mapping, got {type(record)}")
        if self._root is None:  # resolved once: the name below can hold no separator or ".."
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._root = self.folder.resolve()
        path = self._root / f"{validate_id(log_file_id(record.get('conversation_id')))}.json"
        if not self.guard.may_write(LOG_SIZE_HINT):
            return  # counted: the disk reserve is kept for the application's data
        # compact JSON: one C-encoder call for a log this small (indent forces the Python one)
        size = atomic_write_json(path, dict(record), indent=None, durable=False)
        self.guard.succeeded()
        self._retention.record(path, size)
        self.written += 1
        self.last_path = path
        logger.debug("saved pipeline debug log to %s", path)


class TurnLogs:
    """Builds a finished turn's record and queues it on the writer (when ``enabled``)."""

    def __init__(
        self, writer: ConversationLogWriter, sanitizer: Sanitizer, *, enabled: bool = True
    ) -> None:
        self.writer = writer
        self.sanitizer = sanitizer
        self.enabled = enabled

    def save(
        self,
        header: Mapping[str, Any],
        records: list[StageRecord],
        *,
        build_now: bool = False,
        save: bool = True,
    ) -> dict[str, Any] | None:
        """Queue the record, built on the writer thread unless ``build_now`` (then returned)."""
        sanitizer, capture = self.sanitizer, self.sanitizer.capture_content
        write = save and self.enabled
        if build_now:
            log = build_log(header, records, sanitizer, capture)
            if write:
                self.writer.submit(log)
            return log
        if write:
            self.writer.submit(lambda: build_log(header, records, sanitizer, capture))
        return None


def read_log(path: Path) -> dict[str, Any]:
    """Load one conversation log; ValueError says what is wrong with a bad file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a conversation log is a JSON object")
    if not isinstance(data.get("conversation_id"), str):
        raise ValueError(f"{path}: no conversation_id; not a coda conversation log")
    stages = data.get("stages")
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise ValueError(f"{path}: 'stages' must be a list of objects")
    return data


def latest_log(folder: Path) -> Path | None:
    """The newest conversation log in ``folder`` (by modification time, then name)."""
    if not folder.is_dir():
        return None
    logs = [p for p in folder.glob(LOG_PATTERN) if p.is_file() and not p.name.startswith(".")]
    if not logs:
        return None
    return max(logs, key=lambda p: (p.stat().st_mtime, p.name))
