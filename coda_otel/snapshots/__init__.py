"""Memory snapshots: the memory's state as a span event and a JSON file, on a timer or an operation.

    from coda_otel.snapshots import MemorySnapshotEmitter, SnapshotStore

    emitter = MemorySnapshotEmitter(memory)          # files under $CODA_HOME/snapshots
    emitter.take_snapshot()                          # written off the caller's thread
    emitter.flush(5.0)
    SnapshotStore(emitter.snapshot_dir).list()       # what `coda-otel snapshots list` shows

Modules: ``emitter`` (when and how snapshots are taken), ``store`` (the files and their
shape), ``redaction`` (the texts redacted once across snapshots), ``encoded`` (each unchanged
memory's JSON reused across snapshots), ``pacing`` (the writer's pauses that let turns take
the GIL), ``diff`` (what changed between two), ``plot`` (items per tier over time, a PNG),
``trace`` (the span event).
"""

from __future__ import annotations

from coda_otel.snapshots.diff import diff_snapshots, format_diff_table
from coda_otel.snapshots.emitter import MemorySnapshotEmitter
from coda_otel.snapshots.store import SnapshotInfo, SnapshotStore

__all__ = [
    "MemorySnapshotEmitter",
    "SnapshotInfo",
    "SnapshotStore",
    "diff_snapshots",
    "format_diff_table",
]
