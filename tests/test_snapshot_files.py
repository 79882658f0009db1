"""coda_otel.files: incremental JSON, durable and fast atomic writes, retention, temp files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda_otel.files import JSONTexts, atomic_write_json, json_chunks, json_text
from coda_otel.retention import RetentionIndex, enforce_retention, remove_stale_temp_files


class Opaque:
    def __str__(self) -> str:
        return "opaque-object"


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.just(Opaque())
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.lists(scalars | st.lists(scalars, max_size=2), min_size=129, max_size=260)  # sliced
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=5)
        | st.dictionaries(st.integers() | st.booleans() | st.none(), inner, max_size=3)
    ),
    max_leaves=60,
)


def dumps(obj: Any, indent: int | None) -> str:
    return json.dumps(obj, indent=indent, ensure_ascii=False, default=str)


@settings(max_examples=80, deadline=None)
@given(values)
def test_incremental_json_is_exactly_json_dumps(obj: Any) -> None:
    assert "".join(json_chunks(obj)) == dumps(obj, None)
    assert "".join(json_chunks(obj, indent=2)) == dumps(obj, 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(values, max_size=40), values)
def test_elements_encoded_beforehand_are_written_as_they_are(items: list[Any], other: Any) -> None:
    # a list of JSON texts (each element encoded once, e.g. reused across snapshots) writes
    # the text the list itself would, at the depth snapshots keep their memories
    texts = JSONTexts(json_text(item) for item in items)
    doc = {"id": "s", "long_term": {"memories": texts, "other": other}, "tail": [other]}
    same = {"id": "s", "long_term": {"memories": items, "other": other}, "tail": [other]}
    assert "".join(json_chunks(doc)) == dumps(same, None)


def test_a_large_document_is_written_in_many_small_pieces(tmp_path: Path) -> None:
    memories = [
        {"id": f"m{i}", "content": f"fact {i} \u00e9\u4e2d", "importance": 0.5, "topics": ["t"]}
        for i in range(5000)
    ]
    doc = {"snapshot_id": "s", "long_term": {"memories": memories, "memory_count": 5000}}
    pieces = list(json_chunks(doc))
    assert len(pieces) > 30 and max(len(p) for p in pieces) < len("".join(pieces)) / 20
    path = tmp_path / "doc.json"
    size = atomic_write_json(path, doc, indent=None)
    assert path.read_bytes() == dumps(doc, None).encode("utf-8")
    assert size == path.stat().st_size
    assert atomic_write_json(path, doc) == len(dumps(doc, 2).encode("utf-8"))
    assert json.loads(path.read_text("utf-8")) == doc


def test_many_long_encoded_texts_are_written_as_one_json_dumps(tmp_path: Path) -> None:
    # slices of texts long enough to be written on their own, beside short pieces; a lone
    # surrogate is written as its JSON escape wherever it falls
    items: list[Any] = [
        {"id": f"m{i}", "content": f"fact {i} \u00e9\u4e2d " + "x" * (i % 300), "n": i}
        for i in range(1500)
    ]
    items[700]["content"] += "\ud800"
    pace_calls: list[int] = []
    doc = {"head": 1, "memories": JSONTexts(json_text(m) for m in items), "tail": []}
    path = tmp_path / "doc.json"
    size = atomic_write_json(path, doc, indent=None, pace=lambda: pace_calls.append(1))
    expected = dumps({"head": 1, "memories": items, "tail": []}, None)
    assert path.read_bytes() == expected.encode("utf-8", "backslashreplace")
    assert size == path.stat().st_size and len(pace_calls) > 5
    assert "".join(json_chunks(doc)) == expected


def test_durable_writes_fsync_and_fast_writes_do_not(
    tmp_path: Path, fsync_calls: list[int]
) -> None:
    path = tmp_path / "a.json"
    atomic_write_json(path, {"n": 1})
    assert len(fsync_calls) == 2  # the file, then the folder
    fsync_calls.clear()
    atomic_write_json(path, {"n": 2}, durable=False)
    assert fsync_calls == []
    assert json.loads(path.read_text()) == {"n": 2}
    assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    atomic_write_json(path, {"n": 1})

    class Boom:
        def __str__(self) -> str:
            raise RuntimeError("cannot encode")

    with pytest.raises(RuntimeError, match="cannot encode"):
        atomic_write_json(path, {"n": [Boom()]}, durable=False)
    assert json.loads(path.read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_stale_temporary_files_of_killed_writes_are_removed_and_never_counted(
    tmp_path: Path,
) -> None:
    for i in range(3):
        (tmp_path / f"memory_s{i}.json").write_text("{}")
        age(tmp_path / f"memory_s{i}.json", 100 - i)
    stale = tmp_path / ".memory_s9.json.abc123.tmp"  # a write killed 20 minutes ago
    fresh = tmp_path / ".memory_s8.json.def456.tmp"  # a write under way right now
    other = tmp_path / ".traces.jsonl.x.tmp"  # not this pattern's
    for p in (stale, fresh, other):
        p.write_text("{half")
    age(stale, 20 * 60)
    age(other, 20 * 60)
    deleted = enforce_retention(tmp_path, "memory_*.json", max_files=2)
    assert set(deleted) == {stale, tmp_path / "memory_s0.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, other.name, "memory_s1.json", "memory_s2.json"]
    )
    assert remove_stale_temp_files(tmp_path, "memory_*.json", older_than_s=0) == [fresh]


def test_retention_index_prunes_like_a_listing_without_listing_each_write(
    tmp_path: Path,
) -> None:
    old = tmp_path / "log-0.json"
    old.write_text("x" * 10)
    age(old, 60)
    stale = tmp_path / ".log-9.json.zz.tmp"
    stale.write_text("{")
    age(stale, 3600)
    index = RetentionIndex(tmp_path, "log-*.json", max_files=3, max_bytes=100, relist_every=4)
    written: list[Path] = []
    deleted: list[Path] = []
    for i in range(1, 5):
        path = tmp_path / f"log-{i}.json"
        written.append(path)
        deleted += index.record(path, atomic_write_json(path, "y" * 8))
    # the seed listing found log-0 and the stale temporary file; log-0 and log-1 went by count
    assert deleted == [stale, old, written[0]]
    assert index.listings == 1 and index.count == 3 and index.total_bytes == 30
    # overwriting a file replaces its size and makes it the newest
    index.record(written[1], atomic_write_json(written[1], "z" * 38))
    assert index.count == 3 and index.total_bytes == 60
    # by bytes: the oldest go until the total fits
    big = tmp_path / "log-5.json"
    assert index.record(big, atomic_write_json(big, "b" * 58)) == [written[2], written[3]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log-2.json", "log-5.json"]
    assert index.listings == 2  # the 5th record listed the folder again


def test_retention_index_sees_files_added_by_others_at_its_next_listing(tmp_path: Path) -> None:
    index = RetentionIndex(tmp_path, "log-*.json", max_files=2, relist_every=2)
    a, b, d = (tmp_path / f"log-{n}.json" for n in "abd")
    assert index.record(a, atomic_write_json(a, 1)) == []
    assert index.record(b, atomic_write_json(b, 2)) == []
    other = tmp_path / "log-c.json"  # written by another process, older than all
    other.write_text("3")
    age(other, 3600)
    assert index.record(d, atomic_write_json(d, 4)) == [other, a]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log-b.json", "log-d.json"]
    with pytest.raises(ValueError, match="relist_every"):
        RetentionIndex(tmp_path, "*.json", relist_every=0)


def test_a_lone_surrogate_is_written_as_an_escape_not_lost(tmp_path: Path) -> None:
    """Text from outside may hold a lone surrogate (JSON "\\ud800"); the write must not fail."""
    path = tmp_path / "x.json"
    for indent in (None, 2):
        atomic_write_json(path, {"text": "a\ud800b"}, indent=indent)
        assert b"\\ud800" in path.read_bytes()
        assert json.loads(path.read_text(encoding="utf-8")) == {"text": "a\ud800b"}


def test_retention_goes_by_the_names_timestamps_not_modification_times(tmp_path: Path) -> None:
    """After a clock jump (or a copy) modification times lie: a file dated years ahead must not
    outlive newer ones. The names' timestamps and sequence decide, and the count cap holds."""
    names = [f"memory_snap-20261202T0512{i:02d}000000-{i:06d}-ab.json" for i in range(5)]
    for i, name in enumerate(names):
        (tmp_path / name).write_text("{}")
        age(tmp_path / name, -10 * 365 * 86400 if i == 0 else 100 - i)  # the oldest: "future"
    deleted = enforce_retention(tmp_path, "memory_*.json", max_files=3)
    assert [p.name for p in deleted] == names[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[2:]


def test_ids_made_in_one_instant_keep_their_order() -> None:
    from coda_otel.files import new_id

    ids = [new_id("snap") for _ in range(50)]
    assert ids == sorted(ids) and len(set(ids)) == 50
