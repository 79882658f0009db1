"""Memory snapshots at 1k, 10k and 50k memories, and a turn's latency while one runs.

    python -m benchmarks.run --only snapshots

The source is Coda Lite's real ``MemoryManager`` over its SQLite store. Per size:

* caller-side: what ``take_snapshot()`` costs the thread that asks (it only queues; budget
  1 ms at any size), beside a bare ``read_memory_state()``;
* to file: ``take_snapshot()`` until the background writer has the file on disk (budget at
  10k: 200 ms, at 50k: 1 s), the CPU time that took (all threads: robust to other load on
  the machine), and the file's size in bytes.

Then, at 10k memories, a real turn (real embedding model, echo LLM, text in, no TTS):
with the emitter hooked on the memory operations as the app wires it (one snapshot per turn,
copied on the turn's path), and while a snapshot is being written by the background thread,
each beside the same turn without snapshots (budget for the overlapping turn: 1.3x).
"""

from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from benchmarks.common import Result, run_async
from benchmarks.pipelines import add_memories, bench_config, bench_home, one_turn
from coda_lite.memory import LongTermMemory, MemoryManager, ShortTermMemory
from coda_lite.pipeline.build import build_pipeline
from coda_lite.service.server import freeze_heap
from coda_otel.metrics import CodaMetrics
from coda_otel.snapshots.emitter import MemorySnapshotEmitter

SIZES = (1_000, 10_000, 50_000)
#: Until the file is on disk, by size (the writer thread's whole job).
BUDGET_TO_FILE_S = {10_000: 0.200, 50_000: 1.0}
#: What ``take_snapshot()`` may cost the thread that asks, at any size (it only queues).
BUDGET_CALLER_S = 0.001
#: A turn that overlaps a 10k snapshot's write, against the same turn alone.
BUDGET_OVERLAP_RATIO = 1.3


def _sizes(home: Path, quick: bool) -> list[Result]:
    rows: list[Result] = []
    store = LongTermMemory(home / "sizes.sqlite3")
    short = ShortTermMemory(20)
    for i in range(20):
        short.add_turn("user" if i % 2 == 0 else "assistant", f"turn {i}: something was said")
    memory = MemoryManager(short, store, embedder=None)  # type: ignore[arg-type]  # reads only
    emitter = MemorySnapshotEmitter(
        memory, home / "snapshots", metrics=CodaMetrics(CollectorRegistry()), max_files=3
    )
    have = 0
    try:
        for size in SIZES if not quick else SIZES[:2]:
            add_memories(store.path, size - have, seed=size)
            have = size
            reps = 3 if quick or size >= 50_000 else 7
            caller, total, copy, cpu = [], [], [], []
            nbytes = 0
            for _ in range(reps):
                gc.collect()  # a pending full collection would land in whichever is timed
                t0 = time.perf_counter()
                memory.read_memory_state()
                copy.append(time.perf_counter() - t0)
                gc.collect()
                c0, t0 = time.process_time(), time.perf_counter()
                path = emitter.take_snapshot()
                caller.append(time.perf_counter() - t0)
                if path is None or not emitter.flush(60.0):
                    raise RuntimeError("snapshot was not written")
                total.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)  # the caller only waits meanwhile
                nbytes = path.stat().st_size
            budget = BUDGET_TO_FILE_S.get(size)
            label = f"{size // 1000}k memories"
            rows += [
                Result(
                    "snapshots",
                    f"take_snapshot caller-side, {label}",
                    statistics.median(caller),
                    "s",
                    "bare read_memory_state()",
                    statistics.median(copy),
                    budget_abs=BUDGET_CALLER_S,
                ),
                Result(
                    "snapshots",
                    f"snapshot to file, {label}",
                    statistics.median(total),
                    "s",
                    budget_abs=budget,
                    extra={"bytes": nbytes},
                ),
                Result(
                    "snapshots",
                    f"snapshot CPU time, {label}",
                    statistics.median(cpu),
                    "s",
                    note="all threads' CPU from take_snapshot() to the file: the work itself, "
                    "whatever else runs on the machine",
                ),
                Result("snapshots", f"snapshot file size, {label}", nbytes, "B"),
            ]
    finally:
        emitter.close()
        store.close()
    return rows


async def _turns(home: Path, quick: bool) -> list[Result]:
    config = bench_config(home / "turns")
    pipeline = build_pipeline(config)
    add_memories(config.memory_db_path, 10_000, seed=7)
    pipeline.long_term.reopen()  # drop the cached embedding matrix: it now has 10k rows
    manager, memory = pipeline.manager, pipeline.memory
    emitter = MemorySnapshotEmitter(
        memory,
        home / "turn_snapshots",
        interval=2,
        max_files=3,
        metrics=CodaMetrics(CollectorRegistry()),
    )
    emitter.enabled = False
    memory.add_operation_listener(emitter.after_memory_operation)
    hooked: list[float] = []
    plain: list[float] = []
    background: list[float] = []
    plain2: list[float] = []
    rounds = 5 if quick else 20
    try:
        for _ in range(3):
            await one_turn(manager)  # warm-up: model, index, caches
        freeze_heap()  # as `coda-lite serve` does once its models are loaded
        for _ in range(rounds):
            # (a) hooked as the app wires it, interval=2: one snapshot per turn (each turn is
            #     two memory operations, retrieve and add_interaction).
            emitter.enabled = True
            hooked.append(await one_turn(manager))
            emitter.enabled = False
            emitter.flush(60.0)
            plain.append(await one_turn(manager))
            # (b) a snapshot being written in the background while the turn runs.
            emitter.take_snapshot()  # explicit: works while the hook is disabled
            background.append(await one_turn(manager))
            emitter.flush(60.0)
            plain2.append(await one_turn(manager))
    finally:
        emitter.close()
        await pipeline.aclose()
    note = "10k memories; real model, echo LLM, text in, no TTS"
    return [
        Result(
            "snapshots",
            "turn with snapshot hook (1 snapshot/turn, 10k)",
            statistics.median(hooked),
            "s",
            "same turn, no snapshots",
            statistics.median(plain),
            note=note + "; the hook only queues: the copy runs on the writer thread",
        ),
        Result(
            "snapshots",
            "turn while a 10k snapshot is written",
            statistics.median(background),
            "s",
            "same turn, no snapshots",
            statistics.median(plain2),
            budget_ratio=BUDGET_OVERLAP_RATIO,
            note=note,
        ),
    ]


def run(quick: bool) -> list[Result]:
    with bench_home() as home:
        rows = _sizes(home, quick)
        rows += run_async(_turns(home, quick))
    return rows
