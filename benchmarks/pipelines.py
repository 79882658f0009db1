"""Real Coda Lite pipelines and memory stores for the benchmarks (temporary homes, real backends).

    with bench_home() as home:
        config = bench_config(home / "a", tts="none")       # text input, echo LLM, real model
        bare = build_pipeline(config)                       # uninstrumented (NullObserver)
        with otel_env(OTEL_TRACES_EXPORTER="none"):
            app = build_app(bench_config(home / "b"))       # the composition root, all wired
        add_memories(config.memory_db_path, 10_000, dim=384)
        a, b = await alternate_turns(app.pipeline.manager, bare.manager, rounds=40)

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
from coda_lite.memory.sqlite_db import DEFAULT_OWNER

#: A question: the echo LLM answers it and nothing is remembered, so memory stays the same size.
TURN_TEXT = "What is the weather like in Lisbon today?"
TOPICS = ("identity", "location", "work", "preferences", "personal", "family", "health")


@contextlib.contextmanager
def bench_home() -> Iterator[Path]:
    """A temporary ``CODA_HOME`` removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="coda-bench-") as tmp:
        yield Path(tmp)


def bench_config(home: Path, *, tts: str = "none", **overrides: str) -> Config:
    """Defaults (real embedding model, echo LLM) with text input only and ``home`` as CODA_HOME.

    ``overrides`` are more ``CODA_*`` variables, e.g. ``CODA_TELEMETRY_LLM_CACHE_SIZE="0"``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODA_")}
    env.update(CODA_HOME=str(home), CODA_STT_BACKEND="none", CODA_TTS_BACKEND=tts)
    env.setdefault("CODA_LLM_BACKEND", "echo")  # the real model only where a bench asks
    env.update(overrides)
    return load_config(None, env)


def local_model_env() -> dict[str, str]:
    """``CODA_*`` variables for the real local model, greedy, 64 tokens at most. The converted
    model is kept in ``$CODA_LLM_MODELS_DIR`` or ``~/.coda/models`` (the demo's), so it is
    converted once for every benchmark."""
    models = os.environ.get("CODA_LLM_MODELS_DIR") or str(Path("~/.coda/models").expanduser())
    return {
        "CODA_LLM_BACKEND": "local",
        "CODA_LLM_TEMPERATURE": "0",
        "CODA_LLM_MAX_TOKENS": "64",
        "CODA_LLM_MODELS_DIR": models,
    }


#: Caches that never hit (TTL ~0, no LLM cache): the instrumented turn does the same work.
NO_CACHE_HITS = {"CODA_TELEMETRY_EMBED_CACHE_TTL": "1e-9", "CODA_TELEMETRY_LLM_CACHE_SIZE": "0"}
_OTEL_TRACE_VARS = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
)


@contextlib.contextmanager
def otel_env(**values: str) -> Iterator[None]:
    """Only these ``OTEL_*`` trace variables while building (``configure`` reads them then)."""
    saved = {k: os.environ.get(k) for k in (*_OTEL_TRACE_VARS, *values)}
    for k in saved:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def alternate_turns(
    *managers: Any, rounds: int, block: int = 6, warmup: int = 3, text: str = TURN_TEXT
) -> list[list[float]]:
    """Turn latencies of each manager, run in blocks of ``block`` back-to-back turns.

    Each round runs one block per manager, the order rotating every round. The first turn of
    each block is not kept: it would pay for the background work (span export, log and
    snapshot writes) the previous manager's last turn left behind. So every kept turn carries
    its own pipeline's background work and no other's."""
    for _ in range(warmup):
        for m in managers:
            await one_turn(m, text)
    times: list[list[float]] = [[] for _ in managers]
    n = len(managers)
    for r in range(rounds):
        for i in range(n):
            k = (i + r) % n
            await one_turn(managers[k], text)  # absorbs the previous block's spill-over
            for _ in range(block - 1):
                times[k].append(await one_turn(managers[k], text))
    return times


def add_memories(
    db_path: Path, n: int, *, dim: int = 384, seed: int = 0, owner: str = DEFAULT_OWNER
) -> None:
    """Append ``n`` memories with unit-length random embeddings to the store at ``db_path``.

    The store (``LongTermMemory``) must have created the file first (it owns the schema); the
    memories belong to ``owner``."""
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
                owner,
            )
        )
    with contextlib.closing(sqlite3.connect(db_path, timeout=30)) as conn, conn:
        conn.executemany("INSERT INTO memories VALUES (?,?,?,?,?,?,?,?,?,?)", rows)


async def one_turn(manager: Any, text: str = TURN_TEXT) -> float:
    """Seconds for one ``process_user_input`` turn."""
    t0 = time.perf_counter()
    await manager.process_user_input(text, session_id="bench")
    return time.perf_counter() - t0
