"""A bounded local store of recent turns' traces: SQLite (stdlib), searchable, kept across restarts.

Whatever exporter is configured (OTLP to a collector, files, none), the last ``max_turns``
turns stay on this machine for the debug console, within ``max_bytes`` of span content::

    store = TraceStore(Path("~/.coda/traces/turns.sqlite3").expanduser(), max_turns=1000)
    store.add(records)          # span records (see store_exporter.span_record), any batching
    store.search(TraceQuery(session_id="s1", status="error", min_duration_ms=500))
    # [{"trace_id", "session_id", "turn", "start", "duration_ms", "status", "end_reason",
    #   "voice_to_voice_ms", "stages": {"llm": 801.0, ...}, ...}, ...]   newest first
    store.spans("4bf92f3577b34da6a3ce929d0e0e4736")   # every span of that turn, or None
    store.close()

A turn is stored when its root span (``conversation``, which may itself sit under a request's
SERVER span or a caller's span) arrives; its earlier spans wait in memory until then (a
bounded number of traces), a span that ends after it (the SERVER span) is appended to the
stored turn. Spans of traces with another root (a memory snapshot) are not kept. Content is
stored as the spans carry it, which is redacted already.

Robustness: SQLite commits each batch whole (write-ahead log), so a crash mid-write loses at
most that batch, never the file. A file SQLite cannot read (torn by something else, or not a
database) is moved aside as ``<name>.corrupt-<stamp>`` and a fresh store starts, with a warning.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["STATUSES", "TraceQuery", "TraceStore", "open_trace_store", "summarize"]

#: What ``status`` may be asked for; ``stalled`` matches any turn in which a stage stalled.
STATUSES: tuple[str, ...] = ("ok", "error", "interrupted", "cancelled", "stalled")
MAX_LIMIT = 500
_PENDING_TRACES = 512  # traces whose root has not ended yet
_RECENT_TRACES = 256  # stored traces a late span may still join
_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    trace_id TEXT PRIMARY KEY,
    start_ns INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    session_id TEXT,
    status TEXT NOT NULL,
    stalled INTEGER NOT NULL,
    summary TEXT NOT NULL,
    spans TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_start ON turns (start_ns);
CREATE INDEX IF NOT EXISTS turns_session ON turns (session_id, start_ns);
CREATE INDEX IF NOT EXISTS turns_status ON turns (status, start_ns);
CREATE INDEX IF NOT EXISTS turns_stalled ON turns (stalled, start_ns);
"""


@dataclass(frozen=True)
class TraceQuery:
    """Which turns to list: every field narrows the search; ``since`` is epoch seconds."""

    session_id: str | None = None
    status: str | None = None
    min_duration_ms: float | None = None
    since: float | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.min_duration_ms is not None and not self.min_duration_ms >= 0:
            raise ValueError("min_duration_ms must be a number >= 0")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")


def _turn_status(root: Mapping[str, Any], stalled: bool) -> tuple[str, str]:
    """``(status, end_reason)`` of a turn from its root span."""
    attrs = root.get("attributes") or {}
    plain = str(attrs.get("coda.conversation.status") or "ok")
    reason = str(attrs.get("coda.turn.end_reason") or ("completed" if plain == "ok" else plain))
    if (root.get("status") or {}).get("code") == "ERROR" or plain == "error":
        return "error", reason
    if reason == "interrupted":
        return "interrupted", reason
    if plain == "cancelled":
        return "cancelled", reason
    return ("stalled" if stalled else "ok"), reason


def summarize(root: Mapping[str, Any], spans: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One turn's search row: ids, start, duration, status, voice-to-voice, ms per stage."""
    attrs = root.get("attributes") or {}
    stages: dict[str, float] = {}
    stalled = False
    for span in spans:
        span_attrs = span.get("attributes") or {}
        if span_attrs.get("coda.stage.stalled") or any(
            e.get("name") == "stage.stalled" for e in span.get("events") or ()
        ):
            stalled = True
        if span is not root and "coda.stage" in span_attrs:
            name = str(span.get("name"))
            stages[name] = round(stages.get(name, 0.0) + float(span["duration_ms"]), 3)
    status, reason = _turn_status(root, stalled)
    v2v = attrs.get("coda.latency.voice_to_voice")
    turn = attrs.get("coda.turn")
    return {
        "trace_id": root["trace_id"],
        "session_id": attrs.get("session.id"),
        "conversation_id": attrs.get("coda.conversation.id"),
        "turn": turn if isinstance(turn, int) else None,
        "start": _iso(int(root["start_unix_nano"])),
        "duration_ms": round(float(root["duration_ms"]), 3),
        "status": status,
        "end_reason": reason,
        "stalled": stalled,
        "error_type": attrs.get("error.type"),
        "voice_to_voice_ms": round(float(v2v) * 1e3, 3) if isinstance(v2v, int | float) else None,
        "stages": stages,
        "span_count": len(spans),
    }


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        row = conn.execute("PRAGMA quick_check").fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {row[0] if row else 'no answer'}")
    except BaseException:
        conn.close()
        raise
    return conn


class TraceStore:
    """Recent turns in one SQLite file; thread-safe (one writer thread, readers anywhere)."""

    def __init__(
        self,
        path: Path,
        *,
        max_turns: int = 1000,
        max_bytes: int = 64 * 2**20,
        root_names: Iterable[str] = ("conversation",),
    ) -> None:
        if max_turns < 1 or max_bytes < 1:
            raise ValueError("max_turns and max_bytes must be positive")
        self.path = Path(path)
        self.max_turns = max_turns
        self.max_bytes = max_bytes
        self.root_names = frozenset(root_names)
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._conn = self._connect()
        self.path.chmod(0o600)  # spans carry conversation metadata
        count, size = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM turns"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)
        self.evicted = 0  # turns removed to stay within the bounds
        self.skipped = 0  # traces given up on: root never came, or too large

    def _connect(self) -> sqlite3.Connection:
        try:
            return _open(self.path)
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(
                f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            logger.warning("trace store %s is unreadable (%s); moved to %s, starting afresh",
                           self.path, exc, aside.name)  # fmt: skip
            for suffix in ("", "-wal", "-shm"):
                source = self.path.with_name(self.path.name + suffix)
                if source.exists():
                    source.replace(aside.with_name(aside.name + suffix))
            return _open(self.path)

    def __len__(self) -> int:
        return self._count

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    # --- writing --------------------------------------------------------------------------
    def add(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Take span records; store the turns whose root is among them. Returns turns stored."""
        complete: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        late: dict[str, list[dict[str, Any]]] = {}
        done_now: dict[str, list[dict[str, Any]]] = {}  # turns completed by this batch
        with self._lock:
            for record in records:
                span, trace_id = dict(record), str(record["trace_id"])
                if trace_id in self._recent:
                    late.setdefault(trace_id, []).append(span)
                    continue
                if trace_id in done_now:  # ended after its root, in the same batch
                    done_now[trace_id].append(span)
                    continue
                spans = self._pending.setdefault(trace_id, [])
                spans.append(span)
                # The turn's root (``conversation``) ends after its stages; it may itself have
                # a parent (the request's SERVER span, a caller's span), which ends later and
                # is appended then.
                if span.get("name") not in self.root_names:
                    continue
                del self._pending[trace_id]
                complete.append((span, spans))
                done_now[trace_id] = spans
            while len(self._pending) > _PENDING_TRACES:
                self._pending.popitem(last=False)
                self.skipped += 1
            if complete or late:
                self._write(complete, late)
        return len(complete)

    def _write(
        self,
        complete: list[tuple[dict[str, Any], list[dict[str, Any]]]],
        late: Mapping[str, list[dict[str, Any]]],
    ) -> None:
        """Call with the lock held: one transaction for the whole batch."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for root, spans in complete:
                self._insert(root, spans)
            for trace_id, spans in late.items():
                self._append(trace_id, spans)
            self._enforce_bounds()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            self._recount()
            raise

    def _insert(self, root: dict[str, Any], spans: list[dict[str, Any]]) -> None:
        spans.sort(key=lambda s: (int(s["start_unix_nano"]), bool(s.get("parent_span_id"))))
        summary = summarize(root, spans)
        body = json.dumps(spans, separators=(",", ":"), default=str)
        size = len(body)
        if size > self.max_bytes:
            self.skipped += 1
            logger.warning("turn %s is %d bytes, more than the trace store's %d; not kept",
                           root["trace_id"], size, self.max_bytes)  # fmt: skip
            return
        replaced = self._conn.execute(
            "SELECT bytes FROM turns WHERE trace_id = ?", (root["trace_id"],)
        ).fetchone()
        self._conn.execute(
            "INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                root["trace_id"], int(root["start_unix_nano"]), summary["duration_ms"],
                summary["session_id"], summary["status"], int(summary["stalled"]),
                json.dumps(summary, separators=(",", ":"), default=str), body, size,
            ),
        )  # fmt: skip
        if replaced is not None:
            self._count -= 1
            self._bytes -= int(replaced[0])
        self._count += 1
        self._bytes += size
        self._recent[root["trace_id"]] = None
        while len(self._recent) > _RECENT_TRACES:
            self._recent.popitem(last=False)

    def _append(self, trace_id: str, extra: list[dict[str, Any]]) -> None:
        row = self._conn.execute(
            "SELECT spans FROM turns WHERE trace_id = ?", (trace_id,)
        ).fetchone()
        if row is None:  # evicted meanwhile
            return
        spans = [*json.loads(row[0]), *extra]
        root = next((s for s in spans if s.get("name") in self.root_names), None)
        if root is None:
            return
        self._insert(root, spans)  # replaces the row, and its count and bytes

    def _enforce_bounds(self) -> None:
        while self._count > self.max_turns or (self._bytes > self.max_bytes and self._count > 1):
            over = max(1, self._count - self.max_turns)
            rows = self._conn.execute(
                "SELECT trace_id, bytes FROM turns ORDER BY start_ns LIMIT ?", (over,)
            ).fetchall()
            if not rows:
                break
            self._conn.executemany("DELETE FROM turns WHERE trace_id = ?", [(r[0],) for r in rows])
            self._count -= len(rows)
            self._bytes -= sum(int(r[1]) for r in rows)
            self.evicted += len(rows)

    def _recount(self) -> None:
        count, size = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM turns"
        ).fetchone()
        self._count, self._bytes = int(count), int(size)

    # --- reading --------------------------------------------------------------------------
    def search(self, query: TraceQuery | None = None) -> list[dict[str, Any]]:
        """Turn summaries matching ``query``, newest first."""
        q = query or TraceQuery()
        where: list[str] = []
        args: list[str | float | int] = []
        if q.session_id is not None:
            where.append("session_id = ?")
            args.append(q.session_id)
        if q.status == "stalled":
            where.append("stalled = 1")
        elif q.status is not None:
            where.append("status = ?")
            args.append(q.status)
        if q.min_duration_ms is not None:
            where.append("duration_ms >= ?")
            args.append(q.min_duration_ms)
        if q.since is not None:
            where.append("start_ns >= ?")
            args.append(int(q.since * 1e9))
        sql = "SELECT summary FROM turns"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_ns DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, q.limit)).fetchall()
        out = []
        for (summary,) in rows:
            try:
                out.append(json.loads(summary))
            except ValueError:  # a row damaged on disk: skip it, keep the rest
                logger.warning("trace store: skipped an unreadable summary")
        return out

    def spans(self, trace_id: str) -> list[dict[str, Any]] | None:
        """Every stored span of ``trace_id`` (start order), or None when it is not stored."""
        with self._lock:
            row = self._conn.execute(
                "SELECT spans FROM turns WHERE trace_id = ?", (trace_id,)
            ).fetchone()
        if row is None:
            return None
        try:
            spans: list[dict[str, Any]] = json.loads(row[0])
        except ValueError:
            logger.warning("trace store: trace %s is unreadable", trace_id)
            return None
        return spans

    def summary(self, trace_id: str) -> dict[str, Any] | None:
        """The search row of one turn, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT summary FROM turns WHERE trace_id = ?", (trace_id,)
            ).fetchone()
        return json.loads(row[0]) if row is not None else None

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_trace_store(path: Path, *, max_turns: int, max_bytes: int) -> TraceStore | None:
    """The store at ``path``, or None (logged) when it cannot be opened: the service goes on."""
    try:
        return TraceStore(path, max_turns=max_turns, max_bytes=max_bytes)
    except (OSError, sqlite3.Error) as exc:
        logger.error(
            "the local trace store %s cannot be opened (%s); turns are not kept", path, exc
        )
        return None
