"""MemorySnapshotEmitter: triggers, files, span events, metrics, safety under load and misuse."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from coda_otel.files import InvalidIdError, json_chunks
from coda_otel.metrics import CodaMetrics
from coda_otel.sanitize import Sanitizer
from coda_otel.snapshots.emitter import MemorySnapshotEmitter
from coda_otel.snapshots.encoded import EncodedMemories
from coda_otel.snapshots.pacing import Pacer
from coda_otel.snapshots.redaction import SnapshotRedactor
from coda_otel.snapshots.store import SnapshotStore
from coda_otel.testing import InMemoryMemory


@pytest.fixture
def memory() -> InMemoryMemory:
    mem = InMemoryMemory()
    mem.add_turn("user", "hello")
    mem.add_memory("m1", "likes tea", 0.4, ["drinks"])
    return mem


@pytest.fixture
def metrics() -> CodaMetrics:
    return CodaMetrics(process_collector=False)


def make(memory: Any, folder: Path, metrics: CodaMetrics | None = None, **kw: Any):
    seen: list[dict[str, Any]] = []
    emitter = MemorySnapshotEmitter(memory, folder, metrics=metrics, listeners=[seen.append], **kw)
    return emitter, seen


def sample(metrics: CodaMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_interval_fires_exactly_every_n_operations(memory, metrics, tmp_path):
    emitter, seen = make(memory, tmp_path, metrics, interval=3)
    for _ in range(7):
        emitter.after_memory_operation("add", memory_id="m1")
    assert emitter.flush(10)
    assert [s["trigger"] for s in seen] == ["interval", "interval"]
    docs = [SnapshotStore(tmp_path).load(s["snapshot_id"]) for s in seen]
    assert [d["operation_count"] for d in docs] == [3, 6]
    assert sample(metrics, "coda_memory_snapshots_total", trigger="interval") == 2
    assert sample(metrics, "coda_memory_operations_total", operation="add") == 7
    emitter.close()


def test_clear_import_export_always_snapshot_and_win_over_interval(memory, metrics, tmp_path):
    emitter, seen = make(memory, tmp_path, metrics, interval=4)
    for op in ("retrieve", "clear", "import", "export", "add", "add", "retrieve"):
        emitter.after_memory_operation(op, query="what do I like?")
    emitter.flush(10)
    # op 4 ("export") is also the 4th operation: one snapshot, named after the operation.
    assert [s["trigger"] for s in seen] == ["clear", "import", "export"]
    docs = [SnapshotStore(tmp_path).load(s["snapshot_id"]) for s in seen]
    assert [d["operation_count"] for d in docs] == [2, 3, 4]
    for trigger in ("clear", "import", "export"):
        assert sample(metrics, "coda_memory_snapshots_total", trigger=trigger) == 1
    assert sample(metrics, "coda_memory_snapshots_total", trigger="interval") == 0
    emitter.after_memory_operation("add")  # 8th operation
    emitter.flush(10)
    assert [s["trigger"] for s in seen][-1] == "interval"
    emitter.close()


def test_enabled_toggles_at_runtime_and_manual_snapshots_still_work(memory, tmp_path):
    emitter, seen = make(memory, tmp_path, interval=1, enabled=False)
    emitter.after_memory_operation("add")
    emitter.after_memory_operation("clear")
    assert emitter.operation_count == 0
    assert emitter.take_snapshot() is not None
    emitter.enabled = True
    emitter.after_memory_operation("add")
    emitter.flush(10)
    assert [s["trigger"] for s in seen] == ["manual", "interval"]
    assert emitter.operation_count == 1
    emitter.close()


def test_snapshot_file_keeps_the_spec_shape(memory, metrics, tmp_path):
    emitter, seen = make(memory, tmp_path, metrics)
    path = emitter.take_snapshot()
    assert emitter.flush(10)
    assert path is not None and path.parent == tmp_path.resolve()
    doc = json.loads(path.read_text("utf-8"))
    assert set(doc) == {"snapshot_id", "timestamp", "trigger", "operation_count",
                        "short_term", "long_term"}  # fmt: skip
    assert doc["short_term"]["turn_count"] == 1
    assert doc["short_term"]["turns"][0]["content"] == "hello"
    assert doc["long_term"] == {
        "memories": [{"id": "m1", "content": "likes tea", "importance": 0.4, "topics": ["drinks"]}],
        "memory_count": 1,
        "topics": ["drinks"],
    }
    assert seen[0]["counts"] == {"turn_count": 1, "memory_count": 1, "topic_count": 1}
    assert seen[0]["path"] == str(path) and seen[0]["bytes"] == path.stat().st_size
    assert sample(metrics, "coda_memory_items", tier="long_term") == 1
    assert sample(metrics, "coda_memory_topics") == 1
    assert sample(metrics, "coda_memory_snapshot_bytes") == path.stat().st_size
    assert sample(metrics, "coda_memory_snapshot_duration_seconds_count") == 1
    assert path.stat().st_mode & 0o077 == 0  # private to the user
    emitter.close()


class GatedMemory(InMemoryMemory):
    """Reads block until ``gate`` is set: the span that triggered the snapshot can end first."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def read_memory_state(self) -> dict[str, Any]:
        assert self.gate.wait(30)
        return super().read_memory_state()


def traced(memory: Any, tmp_path: Path, **kw: Any):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emitter = MemorySnapshotEmitter(memory, tmp_path, tracer_provider=provider, **kw)
    return emitter, provider.get_tracer("test"), exporter


def expected_attrs(tmp_path: Path, sid: object, trigger: str, op_count: int) -> dict[str, Any]:
    return {
        "coda.snapshot.id": sid,
        "coda.snapshot.trigger": trigger,
        "coda.snapshot.operation_count": op_count,
        "coda.snapshot.path": str(SnapshotStore(tmp_path).path_for(str(sid))),
        "coda.memory.turn_count": 1,
        "coda.memory.memory_count": 1,
        "coda.memory.topic_count": 1,
    }


def test_snapshot_event_with_counts_lands_on_the_triggering_span_while_it_is_open(memory, tmp_path):
    emitter, tracer, exporter = traced(memory, tmp_path, interval=1000)
    with tracer.start_as_current_span("memory_update"):
        emitter.after_memory_operation("clear")  # an operation that always snapshots
        assert emitter.flush(10)  # the span is still open while the writer reads
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    assert event.name == "memory_snapshot"
    attrs = dict(event.attributes or {})
    assert attrs == expected_attrs(tmp_path, attrs["coda.snapshot.id"], "clear", 1)
    emitter.close()


def test_snapshot_after_the_span_ended_gets_a_child_span_with_the_counts(tmp_path):
    memory = GatedMemory()
    memory.add_turn("user", "hello")
    memory.add_memory("m1", "likes tea", 0.4, ["drinks"])
    emitter, tracer, exporter = traced(memory, tmp_path, interval=1000)
    with tracer.start_as_current_span("memory_update") as parent:
        emitter.after_memory_operation("clear")  # returns before the state is read
    memory.gate.set()
    assert emitter.flush(10)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert set(finished) == {"memory_update", "memory_snapshot"}
    assert finished["memory_update"].events == ()
    child = finished["memory_snapshot"]
    assert child.parent is not None and child.parent.span_id == parent.get_span_context().span_id
    assert child.context.trace_id == parent.get_span_context().trace_id
    attrs = dict(child.attributes or {})
    assert attrs == expected_attrs(tmp_path, attrs["coda.snapshot.id"], "clear", 1)
    (event,) = child.events
    assert event.name == "memory_snapshot" and dict(event.attributes or {}) == attrs
    emitter.take_snapshot()  # no span current: nothing traced
    assert emitter.flush(10)
    assert len(exporter.get_finished_spans()) == 2
    emitter.close()


def test_an_interval_snapshot_is_its_own_trace_linked_to_the_turn(memory, tmp_path):
    emitter, tracer, exporter = traced(memory, tmp_path, interval=1)
    with tracer.start_as_current_span("memory_update") as turn_span:
        emitter.after_memory_operation("add")  # the Nth operation: a periodic snapshot
        assert emitter.flush(10)
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert finished["memory_update"].events == ()  # not part of the user's turn
    snap = finished["memory_snapshot"]
    assert snap.parent is None
    assert snap.context.trace_id != turn_span.get_span_context().trace_id
    assert [link.context.span_id for link in snap.links] == [turn_span.get_span_context().span_id]
    attrs = dict(snap.attributes or {})
    assert attrs == expected_attrs(tmp_path, attrs["coda.snapshot.id"], "interval", 1)
    assert snap.instrumentation_scope is not None and snap.instrumentation_scope.version
    emitter.close()


def test_the_caller_never_reads_memory(tmp_path):
    memory = GatedMemory()  # any read would block the caller for 30 s and fail
    emitter, seen = make(memory, tmp_path, interval=1)
    for op in ("add", "clear"):
        emitter.after_memory_operation(op)
    path = emitter.take_snapshot()
    assert path is not None and not path.exists() and seen == []
    memory.gate.set()
    assert emitter.flush(10)
    assert [s["trigger"] for s in seen] == ["interval", "clear", "manual"]
    assert path.exists()
    emitter.close()


HOSTILE_IDS = [
    "../x", "../../etc/passwd", "/etc/passwd", "/tmp/x", "", "a" * 129, "..", ".", ".hidden",
    "a/b", "a\\b", "a\x00b", "\x00", "a\u2215b", "a\uff0fb", "\u2025", "C:x", "~root", 42,
    "snap-1\n", "ok\n",
]  # fmt: skip


@pytest.mark.parametrize("bad", HOSTILE_IDS, ids=repr)
def test_hostile_ids_are_refused_and_nothing_is_written(memory, tmp_path, bad):
    folder = tmp_path / "snaps"
    emitter, seen = make(memory, folder)
    with pytest.raises(InvalidIdError) as info:
        emitter.take_snapshot(snapshot_id=bad)
    assert "id" in str(info.value)
    store = SnapshotStore(folder)
    with pytest.raises(ValueError):
        store.load(bad)
    with pytest.raises(ValueError):
        emitter.compare_snapshots(bad, "fine")
    emitter.flush(10)
    emitter.close()
    assert seen == []
    assert [p for p in tmp_path.rglob("*")] == [folder]


def test_snapshots_stay_consistent_under_concurrent_writes(tmp_path):
    memory = InMemoryMemory()
    emitter, seen = make(memory, tmp_path, interval=10, queue_size=256, max_files=None)
    per_thread = 100

    def writer(n: int) -> None:
        for i in range(per_thread):
            mid = f"w{n}-{i}"
            memory.add_interaction(mid, f"fact {i} from writer {n}", [f"topic{i % 7}"])
            emitter.after_memory_operation("add_interaction")
            if i % 5 == 0:
                memory.remove_memory(f"w{n}-{i - 3}")
                memory.update_memory(mid, importance=0.9)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    manual = [emitter.take_snapshot() for _ in range(20)]
    for t in threads:
        t.join()
    assert emitter.flush(30)
    assert emitter.operation_count == 4 * per_thread  # no lost increments
    assert all(p is not None for p in manual)
    store = SnapshotStore(tmp_path)
    infos = store.list()
    assert len(infos) == len(seen) == emitter.snapshots_written >= 20
    summaries = {s["snapshot_id"]: s for s in seen}  # what listeners (the WebSocket) were told
    for info in infos:
        doc = store.load(info.snapshot_id)
        turns, lt = doc["short_term"]["turns"], doc["long_term"]
        assert doc["short_term"]["turn_count"] == len(turns) == info.turn_count
        assert lt["memory_count"] == len(lt["memories"]) == info.memory_count
        assert summaries[info.snapshot_id]["counts"] == {
            "turn_count": len(turns),
            "memory_count": len(lt["memories"]),
            "topic_count": len(lt["topics"]),
        }
        assert lt["topics"] == sorted({t for m in lt["memories"] for t in m["topics"]})
        turn_ids = {t["turn_id"] for t in turns}
        assert all(m["turn_id"] in turn_ids for m in lt["memories"])
    emitter.close()


def test_full_queue_drops_and_counts_instead_of_blocking(memory, metrics, tmp_path):
    entered, release = threading.Event(), threading.Event()

    def slow_listener(summary: dict[str, Any]) -> None:
        entered.set()
        release.wait(30)

    emitter = MemorySnapshotEmitter(memory, tmp_path, metrics=metrics, queue_size=1,
                                    listeners=[slow_listener])  # fmt: skip
    assert emitter.take_snapshot() is not None  # picked up by the writer, parked in listener
    assert entered.wait(30)
    assert emitter.take_snapshot() is not None  # waits in the queue
    assert emitter.take_snapshot() is None  # queue full: dropped
    assert emitter.dropped == 1
    assert sample(metrics, "coda_memory_snapshot_failures_total", reason="queue_full") == 1
    release.set()
    assert emitter.flush(10)
    assert len(SnapshotStore(tmp_path).list()) == 2
    emitter.close()


class Broken:
    def read_memory_state(self) -> dict[str, Any]:
        raise RuntimeError("memory store is locked by a crashed process")


def test_failures_are_logged_and_counted_never_raised(memory, metrics, tmp_path, caplog):
    emitter = MemorySnapshotEmitter(Broken(), tmp_path / "a", interval=1, metrics=metrics)
    emitter.after_memory_operation("add")
    path = emitter.take_snapshot()  # queued; the read fails later, on the writer thread
    assert emitter.flush(10)
    assert path is not None and not path.exists()
    assert sample(metrics, "coda_memory_snapshot_failures_total", reason="read_error") == 2
    assert emitter.errors == 2 and emitter.snapshots_written == 0
    assert "could not read memory state" in caplog.text
    emitter.close()

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    calls: list[str] = []

    def bad_listener(summary: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    emitter = MemorySnapshotEmitter(memory, blocker, metrics=metrics, interval=1)
    emitter.after_memory_operation("add")
    emitter.flush(10)
    assert sample(metrics, "coda_memory_snapshot_failures_total", reason="write_error") == 1
    emitter.close()

    emitter = MemorySnapshotEmitter(memory, tmp_path / "b", listeners=[bad_listener])
    emitter.add_listener(lambda s: calls.append(s["snapshot_id"]))
    path = emitter.take_snapshot()
    emitter.flush(10)
    assert path is not None and calls == [path.name[len("memory_") : -len(".json")]]
    emitter.close()
    assert emitter.take_snapshot() is None  # closed: skipped, not raised


def test_retention_by_count_and_by_bytes(memory, tmp_path):
    emitter, seen = make(memory, tmp_path / "count", max_files=3)
    for _ in range(5):
        emitter.take_snapshot()
        emitter.flush(10)
    kept = [i.snapshot_id for i in SnapshotStore(tmp_path / "count").list()]
    assert kept == [s["snapshot_id"] for s in seen[-3:]]
    emitter.close()

    size = seen[0]["bytes"]
    emitter, seen = make(memory, tmp_path / "bytes", max_bytes=int(size * 2.5))
    for _ in range(4):
        emitter.take_snapshot()
        emitter.flush(10)
    kept = [i.snapshot_id for i in SnapshotStore(tmp_path / "bytes").list()]
    assert kept == [s["snapshot_id"] for s in seen[-2:]]
    emitter.close()


def test_explicit_id_and_compare_snapshots(memory, tmp_path):
    emitter, _ = make(memory, tmp_path)
    emitter.take_snapshot("before")
    emitter.flush(10)  # the state is read by the writer, so wait before changing it
    memory.add_memory("m2", "likes jazz", 0.7, ["music"])
    memory.update_memory("m1", importance=0.8)
    memory.add_turn("assistant", "noted")
    emitter.take_snapshot("after", trigger="export")
    emitter.flush(10)
    diff = emitter.compare_snapshots("before", "after")
    assert diff["short_term"] == {"turn_count_diff": 1, "turns_added": 1, "turns_removed": 0}
    assert diff["long_term"] == {"memory_count_diff": 1, "topic_count_diff": 1}
    assert [m["id"] for m in diff["new_memories"]] == ["m2"]
    assert diff["changed_memories"] == [
        {"id": "m1", "changes": {"importance": {"before": 0.4, "after": 0.8}}}
    ]
    with pytest.raises(FileNotFoundError, match="no snapshot 'missing'"):
        emitter.compare_snapshots("before", "missing")
    emitter.close()


def test_bad_configuration_is_refused(memory, tmp_path):
    with pytest.raises(ValueError, match="interval"):
        MemorySnapshotEmitter(memory, tmp_path, interval=0)
    with pytest.raises(ValueError, match="max_files"):
        MemorySnapshotEmitter(memory, tmp_path, max_files=0)
    with pytest.raises(TypeError, match="read_memory_state"):
        MemorySnapshotEmitter(object(), tmp_path)  # type: ignore[arg-type]


def test_snapshot_redaction_follows_the_capture_switch_between_snapshots(tmp_path):
    """Redacted texts are remembered between snapshots, but never across a settings change."""
    memory = InMemoryMemory()
    long_fact = "Mail me at ada@example.com about the trip. " + "We fly to Lisbon in May. " * 6
    memory.add_interaction("m1", long_fact, ["travel"])
    sanitizer = Sanitizer(capture_content=False)
    emitter = MemorySnapshotEmitter(memory, tmp_path, sanitizer=sanitizer)
    try:
        emitter.take_snapshot("preview")
        assert emitter.flush(10.0)
        sanitizer.capture_content = True
        emitter.take_snapshot("full")
        assert emitter.flush(10.0)
    finally:
        emitter.close()
    store = SnapshotStore(tmp_path)
    preview = store.load("preview")["long_term"]["memories"][0]["content"]
    full = store.load("full")["long_term"]["memories"][0]["content"]
    assert "ada@example.com" not in preview and "ada@example.com" not in full
    assert len(preview) < len(full)
    assert full.count("Lisbon") == 6


class CopyingMemory(InMemoryMemory):
    """A source that copies its memories on every read: never the same object twice."""

    def read_memory_state(self) -> dict[str, Any]:
        state = super().read_memory_state()
        lt = state["long_term"]
        lt["memories"] = [dict(m, topics=list(m["topics"])) for m in lt["memories"]]
        return state


@pytest.mark.parametrize("source", [InMemoryMemory, CopyingMemory])
def test_a_changed_memory_is_written_anew_and_an_unchanged_one_as_before(tmp_path, source):
    """Each memory's JSON is reused across snapshots only while every field (and its type)
    is the same: each file is exactly what encoding the redacted state afresh writes, whether
    the source hands out the same objects for unchanged memories or copies them."""
    memory = source()
    memory.add_turn("user", "hello")
    for i in range(300):  # more than one slice of the writer's work
        memory.add_memory(f"m{i}", f"fact {i}, mail ada@example.com", 0.5, ["t"])
    sanitizer = Sanitizer()
    emitter = MemorySnapshotEmitter(memory, tmp_path, sanitizer=sanitizer)
    changes: list[tuple[str, dict[str, Any]]] = [
        ("m1", {"importance": 1}),
        ("m1", {"importance": 1.0}),  # equal to 1, written differently
        ("m1", {"importance": True}),
        ("m2", {"content": "now call +44 20 7946 0958"}),
        ("m3", {"topics": ["t", "u"]}),
        ("m4", {"source": "import"}),  # a new field
    ]
    try:
        for n, (mid, fields) in enumerate([("m0", {}), *changes]):
            memory.update_memory(mid, **fields)
            path = emitter.take_snapshot(f"s{n}")
            assert path is not None and emitter.flush(10.0)
            memories = [
                {**item, "content": sanitizer.text(item["content"], sanitizer.preview_length)}
                for item in memory.read_memory_state()["long_term"]["memories"]
            ]  # copies: the source's own memories are read-only
            text = path.read_text("utf-8")
            expected = json.dumps(memories, ensure_ascii=False)
            assert f'"memories": {expected}' in text
            assert json.loads(text)["long_term"]["memories"] == memories
    finally:
        emitter.close()
    assert "ada@example.com" not in text and "7946" not in text


def test_interleaved_owners_each_reuse_their_own_previous_snapshot():
    def doc(owner: str, n: int) -> dict[str, Any]:
        memories = [{"id": f"{owner}{i}", "content": f"fact {i}", "topics": []} for i in range(n)]
        return {"owner": owner, "short_term": {"turns": []}, "long_term": {"memories": memories}}

    encoded = EncodedMemories(SnapshotRedactor(Sanitizer()), owners=2)
    for owner, n, reused in [("a", 300, 0), ("b", 2, 0), ("a", 300, 300), ("b", 2, 2)]:
        prepared = encoded.prepare(doc(owner, n))
        assert encoded.reused == reused
        assert json.loads("".join(json_chunks(prepared))) == json.loads(json.dumps(doc(owner, n)))
    encoded.prepare(doc("c", 1))  # a third owner: the one snapshotted longest ago is dropped
    encoded.prepare(doc("a", 300))
    assert encoded.reused == 0


def _doc(memories: list[Any]) -> dict[str, Any]:
    return {"short_term": {"turns": []}, "long_term": {"memories": list(memories)}}


def test_a_memory_handed_out_again_as_the_same_object_is_reused_without_a_comparison():
    """A source may hand out the very object it handed out before for an unchanged memory
    (MemoryStateSource): its text is reused by identity; a changed memory is a new object,
    compared with the old one and encoded when it differs. The text is always what a fresh
    encoding writes."""

    class NoCompare(dict):  # a memory that must never be compared (nor copied, unchanged)
        def __eq__(self, other: object) -> bool:
            raise AssertionError("compared")

    memories: list[Any] = [
        {"id": f"m{i}", "content": f"fact {i}, mail ada@example.com", "importance": 0.5,
         "topics": ["t"]}
        for i in range(1200)  # more than two slices
    ]  # fmt: skip
    memories.append(NoCompare(id="odd", content="no comparing me"))
    encoded = EncodedMemories(SnapshotRedactor(Sanitizer()))

    def written(items: list[Any]) -> str:
        return "".join(json_chunks(encoded.prepare(_doc(items))))

    def fresh(items: list[Any]) -> str:  # a new cache: every memory encoded
        prepared = EncodedMemories(SnapshotRedactor(Sanitizer())).prepare(_doc(items))
        return "".join(json_chunks(prepared))

    assert written(memories) == fresh(memories)
    assert (encoded.reused, encoded.same_objects) == (0, 0)
    assert written(memories) == fresh(memories)  # the same objects: reused, never compared
    assert (encoded.reused, encoded.same_objects) == (len(memories), len(memories))
    assert "ada@example.com" not in written(memories)

    changed = list(memories)
    changed[1] = {**memories[1], "content": "now call +44 20 7946 0958"}  # new content
    changed[2] = {**memories[2], "source": "import"}  # the same content, a new field
    changed[3] = {**memories[3], "importance": 1}  # another value
    changed[4] = {**memories[4]}  # a new object, equal: reused after a comparison
    text = written(changed)
    assert text == fresh(changed) and "7946" not in text and '"source": "import"' in text
    assert (encoded.reused, encoded.same_objects) == (len(memories) - 3, len(memories) - 4)
    changed[3] = {**changed[3], "importance": 1.0}  # equal to 1, written differently
    text = written(changed)
    assert text == fresh(changed) and '"importance": 1.0' in text
    assert (encoded.reused, encoded.same_objects) == (len(memories) - 1, len(memories) - 1)
    assert written(changed) == text  # nothing changed: every memory the same object
    assert (encoded.reused, encoded.same_objects) == (len(memories), len(memories))
    moved = [{"id": "new", "content": "a new one"}, *changed[2:]]  # each memory moved by one
    text = written(moved)
    assert text == fresh(moved)
    assert (encoded.reused, encoded.same_objects) == (len(moved) - 1, len(moved) - 1)


def test_memories_copied_on_every_read_are_reused_when_equal():
    memories = [{"id": f"m{i}", "content": f"fact {i}", "topics": ["t"]} for i in range(700)]
    encoded = EncodedMemories(SnapshotRedactor(Sanitizer()))
    encoded.prepare(_doc(memories))
    copies = [dict(m, topics=list(m["topics"])) for m in memories]
    copies[5]["topics"].append("u")
    prepared = encoded.prepare(_doc(copies))
    assert (encoded.reused, encoded.same_objects) == (699, 0)
    assert json.loads("".join(json_chunks(prepared)))["long_term"]["memories"] == copies
    encoded.prepare(_doc(copies))  # the entries now hold the copies: found by identity
    assert (encoded.reused, encoded.same_objects) == (700, 700)


def test_the_pacer_pauses_once_its_share_of_work_has_passed():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    pace = Pacer(0.001, 0.002, clock=lambda: now[0], sleep=sleep)
    for step in (0.0004, 0.0004, 0.0004, 0.0001, 0.005):  # work done before each call
        now[0] += step
        pace()
    assert slept == [0.002, 0.002] and pace.pauses == 2  # after 1.2 ms, and after 5.1 ms
