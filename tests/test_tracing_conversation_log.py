"""ConversationLogWriter: bounded folder from an in-memory index, atomic writes without fsync."""

from __future__ import annotations

import os
import time
from pathlib import Path

from coda_otel.pipeline.conversation_log import ConversationLogWriter, latest_log, read_log


def record(n: int, pad: int = 0) -> dict[str, object]:
    return {"conversation_id": f"c{n}", "stages": [{"stage_name": "llm", "pad": "x" * pad}]}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_folder_keeps_the_newest_logs_by_count_and_bytes_without_fsync(
    tmp_path: Path, fsync_calls: list[int]
) -> None:
    # logs left by an earlier run, and the temporary file of a write killed 20 minutes ago
    earlier = tmp_path / "pipeline-20200101T000000000000-old.json"
    earlier.write_text('{"conversation_id": "old", "stages": []}')
    killed = tmp_path / ".pipeline-20200101T000000000001-x.json.k1ll3d.tmp"
    killed.write_text('{"conversation_id": "x", "sta')
    then = time.time() - 1200
    for p in (earlier, killed):
        os.utime(p, (then, then))

    writer = ConversationLogWriter(tmp_path, max_files=3, max_bytes=10_000)
    for n in range(6):
        assert writer.submit(record(n))
        assert writer.flush(10)  # one at a time: distinct, ordered timestamps
    assert writer.written == 6 and fsync_calls == []  # debug logs: atomic rename, no fsync
    kept = [read_log(p)["conversation_id"] for p in sorted(tmp_path.iterdir())]
    assert kept == ["c3", "c4", "c5"]  # the earlier run's log and the temp file are gone
    assert latest_log(tmp_path) == writer.last_path

    for n in range(6, 8):  # two large logs: together over max_bytes, so only the newest stays
        writer.submit(lambda n=n: record(n, pad=6_000))
    assert writer.close(10)
    assert [read_log(p)["conversation_id"] for p in tmp_path.iterdir()] == ["c7"]


def test_logs_that_others_add_are_counted_at_the_next_listing(tmp_path: Path) -> None:
    writer = ConversationLogWriter(tmp_path, max_files=2, relist_every=2)
    for n in range(2):
        writer.submit(record(n))
        assert writer.flush(10)
    stray = tmp_path / "pipeline-20200101T000000000000-stray.json"  # e.g. another process
    stray.write_text('{"conversation_id": "stray", "stages": []}')
    os.utime(stray, (time.time() - 60, time.time() - 60))
    writer.submit(record(2))
    assert writer.close(10)
    assert [read_log(p)["conversation_id"] for p in sorted(tmp_path.iterdir())] == ["c1", "c2"]
    assert names(tmp_path) == sorted(p.name for p in tmp_path.glob("pipeline-*.json"))
