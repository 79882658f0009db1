"""Memory snapshots: a consistent copy of memory, taken and written off the caller's path.

    from coda_otel.snapshots.emitter import MemorySnapshotEmitter

    emitter = MemorySnapshotEmitter(memory, snapshot_dir=coda_home / "snapshots",
                                    interval=10, metrics=metrics, listeners=[ws.on_snapshot])
    emitter.after_memory_operation("add_interaction")   # every 10th op -> trigger "interval"
    emitter.after_memory_operation("clear")             # clear/import/export -> always
    path = emitter.take_snapshot()                      # manual; file appears after flush()
    emitter.after_memory_operation("add", owner="ada")  # snapshots hold the owner's memory only
    emitter.flush(5.0); emitter.compare_snapshots(id1, id2); emitter.close()

``memory`` is any :class:`~coda_otel.protocols.MemoryStateSource`; ``read_memory_state()``
copies the state under its own lock (one call, one consistent snapshot). The caller's thread
only counts, picks the trigger and queues a job: microseconds. One background thread does the
rest: the read, sanitizing (redacted previews by default, redacted full text with capture on),
the JSON in pieces (each memory unchanged since the last snapshot reuses its JSON text:
:mod:`coda_otel.snapshots.encoded`), the atomic write (pausing now and then for the pipeline's
threads: :mod:`coda_otel.snapshots.pacing`), retention, the ``memory_snapshot`` span event
(:mod:`coda_otel.snapshots.trace`), metrics, then listeners (called on that thread with
``{snapshot_id, trigger, timestamp, counts, path, bytes}``: keep them quick and thread-safe).
A full queue drops a snapshot rather than block; failures are logged and counted in
``coda_memory_snapshot_failures{reason=queue_full|read_error|write_error}``. A source whose
memory belongs to owners (``read_memory_state(owner)``) gets one owner per snapshot: the one
whose operation triggered it, named in ``owner``. ``after_memory_operation`` never raises;
``take_snapshot`` raises only :class:`~coda_otel.files.InvalidIdError` for an unsafe id.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry import trace

from coda_otel.background import BackgroundWriter
from coda_otel.files import atomic_write_json, new_id
from coda_otel.metrics import MEMORY_OPERATIONS, SNAPSHOT_TRIGGERS, CodaMetrics, bounded
from coda_otel.protocols import MemoryStateSource
from coda_otel.retention import RetentionIndex
from coda_otel.sanitize import Sanitizer
from coda_otel.snapshots.diff import diff_snapshots
from coda_otel.snapshots.encoded import EncodedMemories
from coda_otel.snapshots.pacing import Pacer
from coda_otel.snapshots.redaction import SnapshotRedactor
from coda_otel.snapshots.store import (
    PATTERN,
    IncreasingTimestamps,
    SnapshotStore,
    build_document,
    default_snapshot_dir,
)
from coda_otel.snapshots.trace import record_snapshot
from coda_otel.write_guard import WriteGuard

logger = logging.getLogger(__name__)

SnapshotListener = Callable[[dict[str, Any]], None]
#: Operations that always trigger a snapshot (named after the operation).
ALWAYS_SNAPSHOT: frozenset[str] = frozenset({"clear", "import", "export"})
DEFAULT_MAX_FILES = 200
DEFAULT_MAX_BYTES = 100 * 2**20


class _Skipped(Exception):
    """A snapshot not written to keep the disk reserve (already counted by the guard)."""


@dataclass(slots=True, frozen=True)
class _Job:
    snapshot_id: str
    trigger: str
    operation_count: int
    path: Path
    span: trace.Span  # current at the trigger; may have ended by the time the job runs
    owner: str | None = None  # whose memory to read (None: the source's default)


class MemorySnapshotEmitter:
    """Takes memory snapshots on operation counts, on clear/import/export, and on demand."""

    def __init__(
        self,
        memory_source: MemoryStateSource,
        snapshot_dir: Path | str | None = None,
        interval: int = 10,
        enabled: bool = True,
        *,
        metrics: CodaMetrics | None = None,
        max_files: int | None = DEFAULT_MAX_FILES,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        listeners: Iterable[SnapshotListener] = (),
        queue_size: int = 4,
        tracer_provider: trace.TracerProvider | None = None,
        sanitizer: Sanitizer | None = None,
        guard: WriteGuard | None = None,
    ) -> None:
        if not hasattr(memory_source, "read_memory_state"):
            raise TypeError("memory_source must have read_memory_state() (MemoryStateSource)")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be a whole number >= 1, got {interval!r}")
        for name, limit in (("max_files", max_files), ("max_bytes", max_bytes)):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {limit!r}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        folder = Path(snapshot_dir) if snapshot_dir else default_snapshot_dir()
        self.store = SnapshotStore(folder)
        self.snapshot_dir = self.store.folder
        self.interval = interval
        self.enabled = enabled
        self.max_files, self.max_bytes = max_files, max_bytes
        self.operation_count = 0
        self.snapshots_written = 0
        self.dropped = 0
        self.errors = 0
        self._source = memory_source
        self.sanitizer = sanitizer if sanitizer is not None else Sanitizer.from_env()
        self._encoded = EncodedMemories(SnapshotRedactor(self.sanitizer))
        #: keeps the disk reserve (when given a ``room`` check), counts and logs failed writes
        self.guard = guard if guard is not None else WriteGuard("snapshots", metrics=metrics)
        self._last_size = 64 * 1024
        self._metrics = metrics
        from coda_otel import __version__

        self._tracer = trace.get_tracer(__name__, __version__, tracer_provider)
        self._listeners: list[SnapshotListener] = list(listeners)
        self._retention = RetentionIndex(
            self.snapshot_dir, PATTERN, max_files=max_files, max_bytes=max_bytes
        )
        self._lock = threading.Lock()
        self._clock = IncreasingTimestamps()  # snapshots sort in the order they were taken
        self._writer: BackgroundWriter[_Job] = BackgroundWriter(
            "coda-memory-snapshots", self._process_safely, queue_size=queue_size
        )
        try:
            self.snapshot_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:  # writes will fail and be counted; the app keeps running
            logger.error("cannot create snapshot folder %s: %s", self.snapshot_dir, exc)

    def add_listener(self, listener: SnapshotListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: SnapshotListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    # -- triggers (caller's thread: cheap, never reads memory) ----------------------------
    def after_memory_operation(
        self,
        operation_type: str,
        memory_id: str | None = None,
        query: str | None = None,
        *,
        owner: str | None = None,
    ) -> None:
        """Count one memory operation; snapshot on every ``interval``-th and on clear/import/export.

        ``memory_id`` and ``query`` are accepted for callers that pass them and never recorded.
        """
        try:
            op = str(operation_type)
            if self._metrics is not None:
                self._metrics.memory_operations.labels(
                    operation=bounded(op, MEMORY_OPERATIONS)
                ).inc()
            if not self.enabled:
                return
            with self._lock:
                self.operation_count += 1
                count = self.operation_count
            if op in ALWAYS_SNAPSHOT:
                self._take(self._new_id(), op, count, owner)
            elif count % self.interval == 0:
                self._take(self._new_id(), "interval", count, owner)
        except Exception:
            logger.exception("memory snapshot hook failed; the pipeline continues")

    def take_snapshot(
        self, snapshot_id: str | None = None, trigger: str = "manual", owner: str | None = None
    ) -> Path | None:
        """Queue a snapshot; returns its file's path (written in the background), or None.

        None means it was not queued (queue full, or the emitter is closed). Works even while
        ``enabled`` is False (an explicit request). An explicit ``snapshot_id`` must be a safe
        id (:func:`~coda_otel.files.validate_id`), else :class:`~coda_otel.files.InvalidIdError`;
        an existing snapshot of that id is replaced. ``flush()`` waits for the file.
        """
        if snapshot_id is None:
            sid, path = self._new_id()
        else:
            sid, path = snapshot_id, self.store.path_for(snapshot_id)  # validated, resolved
        with self._lock:
            count = self.operation_count
        return self._take((sid, path), bounded(trigger, SNAPSHOT_TRIGGERS), count, owner)

    def _new_id(self) -> tuple[str, Path]:
        sid = new_id("snap")
        return sid, self.store.new_path(sid)

    def _take(
        self, named: tuple[str, Path], trigger: str, count: int, owner: str | None = None
    ) -> Path | None:
        sid, path = named
        job = _Job(sid, trigger, count, path, trace.get_current_span(), owner)
        if self._writer.closed:
            logger.warning("snapshot %s skipped: emitter is closed", sid)
            return None
        if not self._writer.submit(job):
            logger.warning("snapshot %s dropped: writer queue full", sid)
            self._fail("queue_full")
            return None
        return path

    # -- background writer ---------------------------------------------------------------
    def _process_safely(self, job: _Job) -> None:
        try:
            self._process(job)
        except Exception:  # a bug here is counted; the writer goes on with the next job
            logger.exception("snapshot %s failed", job.snapshot_id)
            self._fail("write_error")

    def _process(self, job: _Job) -> None:
        t0, start_ns = time.perf_counter(), time.time_ns()
        pace = Pacer()  # pauses now and then, so that a turn running meanwhile gets the GIL
        try:
            ts = self._clock.next()
            read: Any = self._source.read_memory_state
            state = read() if job.owner is None else read(job.owner)
            doc = build_document(state, job.snapshot_id, job.trigger, job.operation_count, ts)
            self._encoded.prepare(doc, pace)  # redacted; memories as JSON, unchanged reused
        except Exception:
            logger.exception("could not read memory state for snapshot %s", job.snapshot_id)
            self._fail("read_error")
            return
        st, lt = doc["short_term"], doc["long_term"]
        counts = {
            "turn_count": st["turn_count"],
            "memory_count": lt["memory_count"],
            "topic_count": len(lt["topics"]),
        }
        if self._metrics is not None:
            self._metrics.memory_items.labels(tier="short_term").set(len(st["turns"]))
            self._metrics.memory_items.labels(tier="long_term").set(lt["memory_count"])
            self._metrics.memory_topics.set(counts["topic_count"])
        attrs = {"coda.snapshot.id": job.snapshot_id, "coda.snapshot.trigger": job.trigger,
                 "coda.snapshot.operation_count": job.operation_count,
                 "coda.snapshot.path": str(job.path),
                 **{f"coda.memory.{k}": v for k, v in counts.items()}}  # fmt: skip
        # An interval snapshot is the emitter's own work, not part of the turn whose operation
        # happened to be the Nth: its own trace, linked to that turn's span.
        own_span = record_snapshot(
            self._tracer, job.span, attrs, start_ns, linked_only=job.trigger == "interval"
        )
        try:
            if not self.guard.may_write(self._last_size):
                raise _Skipped()
            size = self._write(job, doc, time.perf_counter() - t0, pace)
            self.guard.succeeded()
        except Exception as exc:
            if isinstance(exc, OSError):
                self.guard.failed(exc)  # a full disk: counted, logged once per burst
            elif not isinstance(exc, _Skipped):
                logger.exception("could not write snapshot %s", job.path)
            self._fail("write_error")
            if own_span is not None:
                own_span.record_exception(exc)
                own_span.set_status(trace.StatusCode.ERROR)
            return
        finally:
            if own_span is not None:
                own_span.end()
        summary = {"snapshot_id": job.snapshot_id, "trigger": job.trigger, "timestamp": ts,
                   "counts": counts, "path": str(job.path), "bytes": size}  # fmt: skip
        for listener in list(self._listeners):
            try:
                listener(dict(summary))
            except Exception:
                logger.exception("snapshot listener %r failed", listener)

    def _write(self, job: _Job, doc: dict[str, Any], read_s: float, pace: Pacer) -> int:
        t0 = time.perf_counter()
        size = atomic_write_json(job.path, doc, indent=None, pace=pace)
        self._last_size = size
        deleted = self._retention.record(job.path, size)
        if any(p.name == job.path.name for p in deleted):
            logger.warning("snapshot %s (%d bytes) exceeds max_bytes; deleted", job.path, size)
        self.snapshots_written += 1
        if self._metrics is not None:
            self._metrics.memory_snapshots.labels(trigger=job.trigger).inc()
            self._metrics.memory_snapshot_duration.observe(read_s + time.perf_counter() - t0)
            self._metrics.memory_snapshot_bytes.set(size)
        logger.info("memory snapshot saved to %s", job.path)
        return size

    def _fail(self, reason: str) -> None:
        with self._lock:
            if reason == "queue_full":
                self.dropped += 1
            else:
                self.errors += 1
        if self._metrics is not None:
            self._metrics.memory_snapshot_failures.labels(reason=reason).inc()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued snapshot is written; False if ``timeout`` ran out first."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        """Write what is queued, then stop the writer thread. Later snapshots are skipped."""
        self._writer.close(timeout)

    def __enter__(self) -> MemorySnapshotEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def compare_snapshots(self, snapshot_id1: str, snapshot_id2: str) -> dict[str, Any]:
        """The full diff (count keys included) from ``snapshot_id1`` to ``snapshot_id2``.

        Ids are validated; a missing or unreadable snapshot raises FileNotFoundError/ValueError.
        """
        return diff_snapshots(self.store.load(snapshot_id1), self.store.load(snapshot_id2))
