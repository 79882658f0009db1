"""The folder of memory snapshot files: list, load and prune them, by validated id only.

    from coda_otel.snapshots.store import SnapshotStore, default_snapshot_dir

    store = SnapshotStore(default_snapshot_dir())      # $CODA_HOME/snapshots
    for info in store.list():                          # newest last
        print(info.snapshot_id, info.trigger, info.memory_count, info.size)
    snap = store.load("snap-20261125T030102-3f9a1c2b7d4e")   # dict, the shape below
    store.load("../etc/passwd")                        # InvalidIdError (a ValueError)

One snapshot is one file ``memory_<id>.json``. Ids from outside (CLI, WebSocket) go through
:func:`coda_otel.files.safe_path`, so no id can name a file outside the folder. Temporary files
left by an interrupted write start with ``.`` and are never listed. :func:`build_document` and
:func:`summarise` define the file's JSON shape (snapshot_id, timestamp, trigger,
operation_count, short_term{turns, turn_count}, long_term{memories, memory_count, topics}).
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from coda_otel import env
from coda_otel.files import ID_PATTERN, safe_path
from coda_otel.retention import enforce_retention

PREFIX = "memory_"
SUFFIX = ".json"
PATTERN = f"{PREFIX}*{SUFFIX}"


def default_snapshot_dir() -> Path:
    """``$CODA_HOME/snapshots`` (``CODA_HOME`` defaults to ``~/.coda``)."""
    return env.coda_home() / env.SNAPSHOTS_DIR


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot file, summarised. ``error`` is set (and counts are None) when unreadable."""

    snapshot_id: str
    path: Path
    size: int
    timestamp: str
    trigger: str | None = None
    operation_count: int | None = None
    turn_count: int | None = None
    memory_count: int | None = None
    topic_count: int | None = None
    error: str | None = None
    owner: str | None = None  # whose memory (a snapshot holds one owner's)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int_or(value: Any, default: int) -> int:
    number = _int(value)
    return default if number is None else number


def build_document(
    state: Mapping[str, Any], snapshot_id: str, trigger: str, operation_count: int, ts: str
) -> dict[str, Any]:
    """The snapshot document for one ``read_memory_state()`` result."""
    if not isinstance(state, Mapping):
        raise TypeError(f"read_memory_state() returned {type(state).__name__}, not a mapping")
    st = state.get("short_term") or {}
    lt = state.get("long_term") or {}
    turns = list(st.get("turns") or ())
    memories = list(lt.get("memories") or ())
    topics = list(lt.get("topics") or ())
    doc: dict[str, Any] = {
        "snapshot_id": snapshot_id,
        "timestamp": ts,
        "trigger": trigger,
        "operation_count": operation_count,
        "short_term": {"turns": turns, "turn_count": _int_or(st.get("turn_count"), len(turns))},
        "long_term": {
            "memories": memories,
            "memory_count": _int_or(lt.get("memory_count"), len(memories)),
            "topics": topics,
        },
    }
    if isinstance(state.get("owner"), str):
        doc["owner"] = state["owner"]  # whose memory this is: a snapshot holds one owner's
    for key in ("max_memories", "evicted_count"):
        if _int(lt.get(key)) is not None:
            doc["long_term"][key] = lt[key]
    return doc


def summarise(snapshot: Mapping[str, Any]) -> dict[str, int | None]:
    """Counts of a snapshot document: ``turn_count``, ``memory_count``, ``topic_count``."""
    st = snapshot.get("short_term") or {}
    lt = snapshot.get("long_term") or {}
    topics = lt.get("topics") if isinstance(lt, Mapping) else None
    return {
        "turn_count": _int(st.get("turn_count")) if isinstance(st, Mapping) else None,
        "memory_count": _int(lt.get("memory_count")) if isinstance(lt, Mapping) else None,
        "topic_count": len(topics) if isinstance(topics, list) else None,
    }


class SnapshotStore:
    """Read side of a snapshot folder (the emitter writes, this lists, loads and prunes)."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder).expanduser()
        self._root = self.folder.resolve()

    def path_for(self, snapshot_id: str) -> Path:
        """The file for ``snapshot_id``; :class:`~coda_otel.files.InvalidIdError` if unsafe."""
        return safe_path(self.folder, snapshot_id, SUFFIX, prefix=PREFIX)

    def new_path(self, snapshot_id: str) -> Path:
        """The file for an id made by :func:`~coda_otel.files.new_id` (safe by construction):
        the folder was resolved once, so no file-system lookup runs on the caller's thread."""
        return self._root / f"{PREFIX}{snapshot_id}{SUFFIX}"

    def load(self, snapshot_id: str) -> dict[str, Any]:
        """The snapshot document; FileNotFoundError / ValueError with a clear message."""
        path = self.path_for(snapshot_id)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise FileNotFoundError(
                f"no snapshot {snapshot_id!r} in {self.folder} (see `coda-otel snapshots list`)"
            ) from None
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"snapshot {snapshot_id!r} is not valid JSON ({path}): {exc}"
            ) from None
        if not isinstance(doc, dict):
            raise ValueError(f"snapshot {snapshot_id!r} is not a JSON object ({path})")
        missing = [k for k in ("short_term", "long_term") if not isinstance(doc.get(k), dict)]
        if missing:
            raise ValueError(f"snapshot {snapshot_id!r} lacks {', '.join(missing)} ({path})")
        return doc

    def _info(self, path: Path) -> SnapshotInfo | None:
        sid = path.name[len(PREFIX) : -len(SUFFIX)]
        if not ID_PATTERN.fullmatch(sid) or ".." in sid:
            return None
        try:
            st = path.stat()
        except FileNotFoundError:  # pruned meanwhile
            return None
        mtime = datetime.fromtimestamp(st.st_mtime, UTC).isoformat()
        try:
            doc = self.load(sid)
        except (OSError, ValueError) as exc:
            return SnapshotInfo(sid, path, st.st_size, mtime, error=str(exc))
        ts = doc.get("timestamp")
        counts = summarise(doc)
        return SnapshotInfo(
            snapshot_id=sid,
            path=path,
            size=st.st_size,
            timestamp=ts if isinstance(ts, str) and ts else mtime,
            trigger=str(doc.get("trigger")) if doc.get("trigger") is not None else None,
            operation_count=_int(doc.get("operation_count")),
            turn_count=counts["turn_count"],
            memory_count=counts["memory_count"],
            topic_count=counts["topic_count"],
            owner=str(doc["owner"]) if isinstance(doc.get("owner"), str) else None,
        )

    def list(self) -> builtins.list[SnapshotInfo]:
        """Every snapshot in the folder, oldest first (newest last)."""
        if not self.folder.is_dir():
            return []
        infos = [
            info
            for p in self.folder.glob(PATTERN)
            if not p.name.startswith(".") and p.is_file() and (info := self._info(p)) is not None
        ]
        infos.sort(key=lambda i: (i.timestamp, i.snapshot_id))
        return infos

    def enforce_retention(
        self, *, max_files: int | None = None, max_bytes: int | None = None
    ) -> builtins.list[Path]:
        """Delete the oldest snapshot files until both limits hold; returns the deleted paths."""
        return enforce_retention(self.folder, PATTERN, max_files=max_files, max_bytes=max_bytes)


class IncreasingTimestamps:
    """Strictly increasing UTC ISO timestamps (microseconds), safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.min.replace(tzinfo=UTC)

    def next(self) -> str:
        with self._lock:
            now = datetime.now(UTC)
            if now <= self._last:
                now = self._last + timedelta(microseconds=1)
            self._last = now
        return now.isoformat(timespec="microseconds")
