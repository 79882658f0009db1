"""snapshot_diff (exact diffs, readable table) and SnapshotStore (listing, loading, errors)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from coda_otel.files import atomic_write_json
from coda_otel.snapshots.diff import diff_snapshots, format_diff_table
from coda_otel.snapshots.store import SnapshotStore


def turn(n: int, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": f"turn {n}", "timestamp": f"ts{n}", "turn_id": f"t{n}"}


def mem(mid: str, content: str, importance: float, topics: list[str]) -> dict[str, Any]:
    return {"id": mid, "content": content, "importance": importance, "topics": topics}


A: dict[str, Any] = {
    "snapshot_id": "snap-a",
    "timestamp": "2026-01-01T10:00:00.000000+00:00",
    "trigger": "interval",
    "operation_count": 10,
    "short_term": {"turns": [turn(1), turn(2), turn(3)], "turn_count": 3},
    "long_term": {
        "memories": [
            mem("m1", "likes tea", 0.4, ["drinks"]),
            mem("m2", "lives in Oslo", 0.9, ["home"]),
            mem("m3", "has a cat", 0.5, ["pets"]),
        ],
        "memory_count": 3,
        "topics": ["drinks", "home", "pets"],
    },
}


def changed_copy() -> dict[str, Any]:
    b = copy.deepcopy(A)
    b.update(snapshot_id="snap-b", timestamp="2026-01-01T10:05:00.000000+00:00")
    # sliding window of 3 turns: t1 and t2 fall out, t4 and t5 arrive
    b["short_term"] = {"turns": [turn(3), turn(4, "assistant"), turn(5)], "turn_count": 5}
    lt = b["long_term"]
    lt["memories"] = [
        mem("m1", "likes green tea", 0.4, ["drinks"]),  # content changed
        mem("m3", "has a cat", 0.8, ["pets"]),  # importance changed
        mem("m4", "plays chess", 0.6, ["games"]),  # new
    ]  # m2 removed
    lt["memory_count"] = 3
    lt["topics"] = ["drinks", "games", "pets"]
    return b


def test_diff_is_exact_on_known_changes():
    diff = diff_snapshots(A, changed_copy())
    assert diff == {
        "snapshot_id1": "snap-a",
        "snapshot_id2": "snap-b",
        "timestamp1": A["timestamp"],
        "timestamp2": "2026-01-01T10:05:00.000000+00:00",
        "summary": {
            "turn_count": {"before": 3, "after": 5},
            "memory_count": {"before": 3, "after": 3},
            "topic_count": {"before": 3, "after": 3},
        },
        "short_term": {"turn_count_diff": 2, "turns_added": 2, "turns_removed": 2},
        "long_term": {"memory_count_diff": 0, "topic_count_diff": 0},
        "new_memories": [mem("m4", "plays chess", 0.6, ["games"])],
        "removed_memories": [mem("m2", "lives in Oslo", 0.9, ["home"])],
        "changed_memories": [
            {
                "id": "m1",
                "changes": {"content": {"before": "likes tea", "after": "likes green tea"}},
            },
            {"id": "m3", "changes": {"importance": {"before": 0.5, "after": 0.8}}},
        ],
        "topics_added": ["games"],
        "topics_removed": ["home"],
        "new_turns": [turn(4, "assistant"), turn(5)],
    }


def test_diff_of_a_snapshot_with_itself_is_empty_and_json_safe():
    diff = diff_snapshots(A, A)
    assert diff["new_memories"] == diff["removed_memories"] == diff["changed_memories"] == []
    assert diff["new_turns"] == [] and diff["topics_added"] == diff["topics_removed"] == []
    assert json.loads(json.dumps(diff)) == diff
    assert "No memory, topic or turn changes." in format_diff_table(diff)


def test_diff_table_is_readable():
    table = format_diff_table(diff_snapshots(A, changed_copy()))
    lines = table.splitlines()
    assert lines[0].startswith("snap-a (2026-01-01T10:00:00")
    assert lines[1].startswith("  -> snap-b")
    assert lines[4].split() == ["turns", "3", "5", "+2"]
    assert lines[5].split() == ["memories", "3", "3", "+0"]
    assert "Memories added (1)" in lines and "Memories removed (1)" in lines
    assert any(line.split()[:3] == ["m4", "0.60", "plays"] for line in lines)
    assert "    content     likes tea -> likes green tea" in lines
    assert "    importance  0.5 -> 0.8" in lines
    assert "Topics added: games" in lines and "Topics removed: home" in lines
    assert "Turns added (2)" in lines


@pytest.mark.parametrize(
    "bad, message",
    [([], "JSON object"), ({"snapshot_id": "x"}, "'short_term'"),
     ({"short_term": {"turns": "oops"}, "long_term": {}}, "must be a list")],
)  # fmt: skip
def test_malformed_snapshots_give_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        diff_snapshots(bad, A)


def test_store_lists_newest_last_and_flags_unreadable_files(tmp_path):
    store = SnapshotStore(tmp_path)
    b = changed_copy()
    atomic_write_json(store.path_for("zzz-older"), A)  # name order differs from time order
    atomic_write_json(store.path_for("aaa-newer"), b)
    store.path_for("broken").write_text("{ not json", "utf-8")
    (tmp_path / ".memory_aaa.json.123.tmp").write_text("{")  # leftover of a killed write
    (tmp_path / "notes.txt").write_text("ignored")
    infos = store.list()
    # unreadable files sort by modification time (now, after the 2026-01-01 snapshots)
    assert [i.snapshot_id for i in infos] == ["zzz-older", "aaa-newer", "broken"]
    assert "not valid JSON" in (infos[2].error or "") and infos[2].memory_count is None
    newer = infos[1]
    assert (newer.trigger, newer.operation_count) == ("interval", 10)
    assert (newer.turn_count, newer.memory_count, newer.topic_count) == (5, 3, 3)
    assert newer.size == store.path_for("aaa-newer").stat().st_size
    assert newer.to_dict()["path"] == str(store.path_for("aaa-newer"))
    assert SnapshotStore(tmp_path / "missing").list() == []


def test_store_load_errors_are_clear(tmp_path):
    store = SnapshotStore(tmp_path)
    with pytest.raises(FileNotFoundError, match="no snapshot 'nope'"):
        store.load("nope")
    store.path_for("list").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a JSON object"):
        store.load("list")
    store.path_for("partial").write_text('{"short_term": {}}')
    with pytest.raises(ValueError, match="lacks long_term"):
        store.load("partial")
    with pytest.raises(ValueError, match="path separators"):
        store.load("../../etc/passwd")
