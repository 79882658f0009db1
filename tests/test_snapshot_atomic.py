"""A process killed (SIGKILL) while writing snapshots leaves the old file or the new one.

A child process loops replacing the snapshot ``state`` with generations of alternating size
(several MB each). The test watches the folder and kills the child as soon as a temporary file
shows that a write is under way, several times over, and checks each time that the snapshot
holds one whole generation and that the folder lists nothing else.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from coda_otel.snapshots.store import SnapshotStore
from coda_otel.testing import wait_until

CHILD = textwrap.dedent(
    """
    import sys
    from coda_otel.snapshots.emitter import MemorySnapshotEmitter

    class Generations:
        gen = 0
        def read_memory_state(self):
            g, n = self.gen, 30000 if self.gen % 2 else 20000
            memories = [{"id": f"g{g}-{i}", "content": f"generation {g} memory {i} " * 3,
                         "importance": 0.5, "topics": [f"g{g}"]} for i in range(n)]
            return {"short_term": {"turns": [{"role": "user", "content": f"gen {g}"}],
                                   "turn_count": g},
                    "long_term": {"memories": memories, "memory_count": n, "topics": [f"g{g}"]}}

    source = Generations()
    emitter = MemorySnapshotEmitter(source, sys.argv[1], max_files=None, max_bytes=None)
    while True:
        source.gen += 1
        emitter.take_snapshot("state")
        emitter.flush()
        if source.gen == 1:
            print("ready", flush=True)
    """
)


def check_whole_generation(store: SnapshotStore) -> int:
    doc = store.load("state")  # raises on a torn or half-written file
    lt = doc["long_term"]
    g = doc["short_term"]["turn_count"]
    assert lt["memory_count"] == len(lt["memories"]) == (30000 if g % 2 else 20000)
    assert lt["topics"] == [f"g{g}"]
    assert {m["topics"][0] for m in lt["memories"]} == {f"g{g}"}
    return int(g)


def wait_for_write_in_progress(folder: Path, timeout: float) -> None:
    """Return once a temporary snapshot file exists (a write is under way)."""
    wait_until(
        lambda: any(name.startswith(".") for name in os.listdir(folder)),
        timeout,
        interval=0.0002,
        what="the child to start a write",
    )


def test_sigkill_mid_write_never_leaves_a_corrupt_snapshot(tmp_path):
    store = SnapshotStore(tmp_path)
    generations = []
    for _ in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            wait_for_write_in_progress(tmp_path, timeout=30)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(30)
        assert child.returncode == -signal.SIGKILL
        generations.append(check_whole_generation(store))
        # A killed write leaves its hidden temporary file; it is never listed, and removed here
        # so the next round's watch sees only the next write.
        assert [i.snapshot_id for i in store.list()] == ["state"]
        for p in tmp_path.iterdir():
            if p.name != "memory_state.json":
                assert p.name.startswith(".memory_state.json.") and p.name.endswith(".tmp")
                p.unlink()
    assert all(g >= 1 for g in generations)
