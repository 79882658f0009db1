"""Real Coda Lite pipelines and memory stores for the benchmarks (temporary homes, real backends).

    with bench_home() as home:
        config = bench_config(home, tts="none")            # text input, echo LLM, real model
        pipeline = build_pipeline(config)                  # uninstrumented (NullObserver)
        add_memories(config.memory_db_path, 10_000, dim=384)
        turn_s = run_async(time_turns(pipeline.manager, n=20))

``add_memories`` writes rows straight into the store's SQLite table in one transaction: the
store's own ``add`` commits (and fsyncs) per memory, which would take minutes for 50k rows.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from coda_lite.config import Config, load_config

#: A question: the echo LLM answers it and nothing is remembered, so memory stays the same size.
TURN_TEXT = "What is the weather like in Lisbon today?"
TOPICS = ("identity", "location", "work", "preferences", "personal", "family", "health")


@contextlib.contextmanager
def bench_home() -> Iterator[Path]:
    """A temporary ``CODA_HOME`` removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="coda-bench-") as tmp:
        yield Path(tmp)


def bench_config(home: Path, *, tts: str = "none", telemetry: bool = True) -> Config:
    """Defaults (real embedding model, echo LLM) with text input only and ``home`` as CODA_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODA_")}
    env.update(
        CODA_HOME=str(home),
        CODA_STT_BACKEND="none",
        CODA_TTS_BACKEND=tts,
        CODA_TELEMETRY_ENABLED="true" if telemetry else "false",
    )
    return load_config(None, env)


def add_memories(db_path: Path, n: int, *, dim: int = 384, seed: int = 0) -> None:
    """Append ``n`` memories with unit-length random embeddings to the store at ``db_path``.

    The store (``LongTermMemory``) must have created the file first (it owns the schema)."""
    rng = np.random.default_rng(seed)
    now = time.time()
    rows: list[tuple[Any, ...]] = []
    for i in range(n):
        vec = rng.standard_normal(dim).astype(np.float32)
        vec /= np.linalg.norm(vec)
        topics = sorted({TOPICS[i % len(TOPICS)], f"topic_{i % 300}"})
        content = f"Fact {seed}-{i}: the user mentioned item {i % 997} while talking about cooking."
        rows.append(
            (
                uuid.uuid4().hex,
                content,
                0.5,
                json.dumps(topics),
                now + i * 1e-3,
                "bench",
                vec.tobytes(),
                dim,
                "bench",
            )
        )
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as conn, conn:
        conn.executemany("INSERT INTO memories VALUES (?,?,?,?,?,?,?,?,?)", rows)


async def one_turn(manager: Any, text: str = TURN_TEXT) -> float:
    """Seconds for one ``process_user_input`` turn."""
    t0 = time.perf_counter()
    await manager.process_user_input(text, session_id="bench")
    return time.perf_counter() - t0
