"""The local trace store: turns from real SDK spans, searched, bounded, kept across restarts.

Spans come from a real TracerProvider through the store's own BatchSpanProcessor and exporter
(the way the service feeds it), shaped like the pipeline debugger's: a ``conversation`` root
and one child span per stage.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from coda_otel.tracing.store import TraceQuery, TraceStore
from coda_otel.tracing.store_exporter import TraceStoreExporter, store_processor

STAGES = ("stt", "memory_retrieval", "llm", "memory_update", "tts")


class Turns:
    """A provider whose spans go to ``store``; :meth:`turn` records one pipeline-like turn."""

    def __init__(self, store: TraceStore) -> None:
        self.store = store
        self.provider = TracerProvider()
        self.provider.add_span_processor(store_processor(TraceStoreExporter(store)))
        self.tracer = self.provider.get_tracer("test")
        self.clock = time.time_ns() - 10**12

    def turn(
        self,
        session: str,
        number: int,
        *,
        stage_ms: float = 10.0,
        status: str = "ok",
        reason: str | None = None,
        stalled: bool = False,
        flush: bool = True,
    ) -> str:
        t0 = self.clock
        self.clock += 10**10
        root = self.tracer.start_span(
            "conversation",
            start_time=t0,
            attributes={"coda.conversation.id": f"c-{session}-{number}", "coda.turn": number,
                        "session.id": session},
        )  # fmt: skip
        ctx = __import__("opentelemetry.trace", fromlist=["set_span_in_context"])
        parent = ctx.set_span_in_context(root)
        at = t0
        for name in STAGES:
            span = self.tracer.start_span(name, context=parent, start_time=at,
                                          attributes={"coda.stage": name})  # fmt: skip
            if name == "tts" and stalled:
                span.add_event("stage.stalled", {"coda.stage.idle_seconds": 1.5})
                span.set_attribute("coda.stage.stalled", True)
            at += int(stage_ms * 1e6)
            span.end(end_time=at)
        root.set_attribute("coda.conversation.status", status)
        root.set_attribute("coda.latency.voice_to_voice", stage_ms * 4 / 1e3)
        if reason:
            root.set_attribute("coda.turn.end_reason", reason)
        if status == "error":
            root.set_status(Status(StatusCode.ERROR, "stage llm failed"))
        root.end(end_time=at)
        if flush:
            self.provider.force_flush()
        return f"{root.get_span_context().trace_id:032x}"

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def turns(tmp_path: Path) -> Iterator[Turns]:
    t = Turns(TraceStore(tmp_path / "turns.sqlite3", max_turns=50))
    yield t
    t.close()
    t.store.close()


def test_a_turn_is_stored_with_its_summary_and_spans(turns: Turns) -> None:
    trace_id = turns.turn("s1", 1, stage_ms=20.0)
    [row] = turns.store.search()
    assert row["trace_id"] == trace_id
    assert (row["session_id"], row["turn"], row["status"], row["end_reason"]) == (
        "s1", 1, "ok", "completed",
    )  # fmt: skip
    assert row["duration_ms"] == pytest.approx(100.0)
    assert row["voice_to_voice_ms"] == pytest.approx(80.0)
    assert row["stages"] == {name: pytest.approx(20.0) for name in STAGES}
    spans = turns.store.spans(trace_id)
    assert spans is not None and spans[0]["name"] == "conversation"
    assert {s["name"] for s in spans} == {"conversation", *STAGES}
    assert turns.store.spans("0" * 32) is None


def test_search_filters_and_orders_newest_first(turns: Turns) -> None:
    ok = turns.turn("alpha", 1)
    slow = turns.turn("alpha", 2, stage_ms=300.0)
    failed = turns.turn("beta", 1, status="error")
    cut = turns.turn("beta", 2, status="cancelled", reason="interrupted", stalled=True)

    def ids(**query: Any) -> list[str]:
        return [r["trace_id"] for r in turns.store.search(TraceQuery(**query))]

    assert ids() == [cut, failed, slow, ok]
    assert ids(session_id="alpha") == [slow, ok]
    assert ids(status="error") == [failed]
    assert ids(status="interrupted") == [cut]
    assert ids(status="stalled") == [cut]
    assert ids(status="ok") == [slow, ok]
    assert ids(min_duration_ms=1000) == [slow]
    assert ids(limit=1) == [cut]
    since = turns.store.summary(failed)
    assert since is not None
    from datetime import datetime

    assert ids(since=datetime.fromisoformat(since["start"]).timestamp()) == [cut, failed]
    with pytest.raises(ValueError, match="status must be one of"):
        TraceQuery(status="bogus")


def test_spans_before_their_root_wait_and_other_traces_are_not_kept(turns: Turns) -> None:
    other = turns.tracer.start_span("memory.snapshot")
    other.end()
    trace_id = turns.turn("s", 1, flush=False)  # stages and root in one batch, any order
    turns.provider.force_flush()
    assert [r["trace_id"] for r in turns.store.search()] == [trace_id]


def test_a_turn_under_a_request_span_keeps_the_span_that_ends_after_it(turns: Turns) -> None:
    """The turn's root may have a parent (the request's SERVER span) that ends after it: in
    the same export batch or a later one, it joins the stored turn."""
    from opentelemetry import trace

    for same_batch in (True, False):
        request = turns.tracer.start_span("POST /v1/turns")
        with trace.use_span(request, end_on_exit=False):
            trace_id = turns.turn("req", 1, flush=not same_batch)
        request.end()
        turns.provider.force_flush()
        spans = turns.store.spans(trace_id)
        assert spans is not None
        assert {s["name"] for s in spans} == {"POST /v1/turns", "conversation", *STAGES}
        (row,) = [r for r in turns.store.search() if r["trace_id"] == trace_id]
        assert row["session_id"] == "req"


def test_bounds_keep_the_newest_turns(tmp_path: Path) -> None:
    t = Turns(TraceStore(tmp_path / "t.sqlite3", max_turns=5))
    try:
        made = [t.turn("s", n) for n in range(12)]
        assert [r["trace_id"] for r in t.store.search()] == made[::-1][:5]
        assert len(t.store) == 5 and t.store.evicted == 7
        size, clock = t.store.stored_bytes, t.clock
    finally:
        t.close()
        t.store.close()
    small = Turns(TraceStore(tmp_path / "t.sqlite3", max_turns=50, max_bytes=size // 2))
    small.clock = clock
    try:
        small.turn("s", 99)  # reopened over the byte cap: the oldest go first
        assert small.store.stored_bytes <= size // 2
        assert small.store.search()[0]["turn"] == 99
    finally:
        small.close()
        small.store.close()


def test_the_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "turns.sqlite3"
    first = Turns(TraceStore(path))
    trace_id = first.turn("keep", 1)
    first.close()
    first.store.close()
    again = TraceStore(path)
    try:
        assert [r["trace_id"] for r in again.search()] == [trace_id]
        assert again.spans(trace_id) is not None
    finally:
        again.close()


def test_a_torn_file_is_moved_aside_and_the_store_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "turns.sqlite3"
    first = Turns(TraceStore(path))
    for n in range(20):
        first.turn("s", n)
    first.close()
    first.store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00garbage" * 100)  # cut mid-page
    (tmp_path / "turns.sqlite3-wal").unlink(missing_ok=True)
    store = TraceStore(path)
    try:
        t = Turns(store)
        trace_id = t.turn("after", 1)
        assert trace_id in [r["trace_id"] for r in store.search()]
        t.close()
    finally:
        store.close()
    assert len(list(tmp_path.glob("turns.sqlite3.corrupt-*"))) == 1


def test_a_write_cut_short_by_a_crash_loses_only_that_write(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    t = Turns(TraceStore(live / "turns.sqlite3"))
    kept = [t.turn("s", n) for n in range(5)]
    t.turn("s", 5)
    # the files as a crash would leave them: copied while open, the log's last write torn
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for source in live.iterdir():
        (crashed / source.name).write_bytes(source.read_bytes())
    wal = crashed / "turns.sqlite3-wal"
    wal.write_bytes(wal.read_bytes()[:-700])
    t.close()
    t.store.close()
    store = TraceStore(crashed / "turns.sqlite3")
    try:
        found = [r["trace_id"] for r in store.search()]
        assert found[-5:] == kept[::-1] and len(found) in (5, 6)
        assert not list(crashed.glob("*.corrupt-*"))
    finally:
        store.close()


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "turns.sqlite3"
    path.write_text("not a database at all\n" * 200)
    store = TraceStore(path)
    try:
        assert store.search() == []
        assert len(list(tmp_path.glob("turns.sqlite3.corrupt-*"))) == 1
    finally:
        store.close()
