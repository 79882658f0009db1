"""An embedding cache in front of any text embedder, observed by the cache debugger.

Wraps anything with ``model_name``, ``dim`` and ``encode(texts) -> ndarray`` (Coda Lite's
sentence-transformers embedder, for one) and offers the same surface plus async helpers::

    embedder = CachedEmbedder(SentenceTransformerEmbedder(...), maxsize=1024, ttl=3600.0,
                              debugger=debugger)
    vectors = embedder.encode(["hello", "world", "hello"])   # one model call for the misses
    vector = await embedder.embed_text("hello")               # hit: no model call at all
    batch = await embedder.embed_batch(["a", "b"])            # encoding runs in a thread

The key is ``"<model name>:<blake2b-256 of the text>"``, so two models never share entries
and no text is kept as a key. Cached vectors are read-only arrays (a caller cannot corrupt
the cache); ``encode`` returns a fresh writable matrix. Each miss's share of the model call
is recorded as the cache's load cost, so hits are credited with measured time saved. Model
calls are serialised (tokenizers are not safe to share between threads); lookups are not.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from coda_otel.cache.debugger import CacheDebugger
from coda_otel.cache.observed import ObservedTTLCache

Vector = npt.NDArray[Any]


class TextEmbedder(Protocol):
    """What :class:`CachedEmbedder` wraps."""

    @property
    def model_name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vector: ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str | bytes):
        raise TypeError("texts must be a sequence of strings, not a single string")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
    return out


class _Plan(NamedTuple):
    keys: list[str]
    found: dict[str, Vector]
    misses: dict[str, str]  # key -> text, distinct, first-seen order
    hit_keys: list[str]  # lookups answered without the model (a repeated miss is a hit)


class CachedEmbedder:
    """A thread-safe TTL+LRU cache of ``embedder``'s vectors (see the module docstring)."""

    def __init__(
        self,
        embedder: TextEmbedder,
        *,
        maxsize: int = 1024,
        ttl: float = 3600.0,
        debugger: CacheDebugger | None = None,
        cache_name: str = "embedding",
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.embedder = embedder
        self.model_name: str = embedder.model_name
        self.dim: int = int(embedder.dim)
        self.cache: ObservedTTLCache[str, Vector] = ObservedTTLCache(
            maxsize, ttl, name=cache_name, debugger=debugger, timer=timer
        )
        self.debugger = self.cache.debugger
        self._model_lock = threading.Lock()

    def key_for(self, text: str) -> str:
        """The cache key of ``text``: model name and a blake2b-256 digest, never the text."""
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=32)
        return f"{self.model_name}:{digest.hexdigest()}"

    # --- sync ---------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> Vector:
        """Vectors for ``texts`` in order, shape ``(len(texts), dim)``; one model call for
        all the distinct texts not in the cache."""
        plan = self._plan(texts)
        if plan.misses:
            plan.found.update(self._compute(plan.misses))
        return self._finish(plan)

    def _plan(self, texts: Sequence[str]) -> _Plan:
        """Keys in order, what the cache already holds, and the distinct misses to compute.

        One access per text: a repeat of a missing text within the batch is a hit, since the
        batch computes it once and reuses it."""
        items = _check_texts(texts)
        key_for, peek = self.key_for, self.cache.peek
        keys = [key_for(t) for t in items]
        found: dict[str, Vector] = {}
        misses: dict[str, str] = {}
        hit_keys: list[str] = []
        for key, text in zip(keys, items, strict=True):
            if key in found or key in misses:
                hit_keys.append(key)
            elif (value := peek(key)) is None:
                misses[key] = text
            else:
                found[key] = value
                hit_keys.append(key)
        return _Plan(keys, found, misses, hit_keys)

    def _finish(self, plan: _Plan) -> Vector:
        self._record_hits(plan.hit_keys)
        if not plan.keys:
            return np.empty((0, self.dim), dtype=np.float32)
        found = plan.found
        return np.array([found[k] for k in plan.keys])  # a fresh writable matrix, one C call

    def _record_hits(self, hit_keys: list[str]) -> None:
        record, name = self.debugger.record_cache_access, self.cache.name
        for key in hit_keys:
            record(name, key, True)

    def _compute(self, texts_by_key: dict[str, str]) -> dict[str, Vector]:
        """One model call for all ``texts_by_key``; each miss is charged its share."""
        texts = list(texts_by_key.values())
        started = time.perf_counter()
        try:
            with self._model_lock:
                matrix = np.asarray(self.embedder.encode(texts))
        except BaseException:
            for key in texts_by_key:
                self.debugger.record_cache_access(self.cache.name, key, False)
            raise
        share = (time.perf_counter() - started) / len(texts)
        if matrix.shape != (len(texts), self.dim):
            raise ValueError(
                f"{self.model_name} returned shape {matrix.shape}, "
                f"expected {(len(texts), self.dim)}"
            )
        fresh: dict[str, Vector] = {}
        for key, row in zip(texts_by_key, matrix, strict=True):
            vector = np.array(row, copy=True)
            vector.setflags(write=False)
            fresh[key] = vector
            self.debugger.record_cache_access(self.cache.name, key, False)
            self.debugger.record_load(self.cache.name, share)
            self.cache.put(key, vector)
        return fresh

    # --- async --------------------------------------------------------------------------
    async def embed_text(self, text: str) -> Vector:
        """The (read-only) vector of ``text``; a miss is encoded in a worker thread."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, got {type(text).__name__}")
        key = self.key_for(text)
        cached = self.cache.peek(key)
        if cached is not None:
            self.debugger.record_cache_access(self.cache.name, key, True)
            return cached
        fresh = await asyncio.to_thread(self._compute, {key: text})
        return fresh[key]

    async def embed_batch(self, texts: Sequence[str]) -> Vector:
        """:meth:`encode` without blocking the event loop (all hits: no thread at all)."""
        plan = self._plan(texts)
        if plan.misses:
            plan.found.update(await asyncio.to_thread(self._compute, plan.misses))
        return self._finish(plan)
