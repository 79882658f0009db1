"""The language model stage: ``stream(query, context)`` yields text, then an :class:`LLMResult`.

    from coda_lite.llm import make_llm

    llm = make_llm(LlmConfig(backend="echo"))      # deterministic, offline
    async for item in llm.stream("Where do I live?", [{"content": "I live in Lisbon."}]):
        item          # ' You', ' told', ... then LLMResult(text, model, tokens, provider)
    r = await llm.generate("Where do I live?", [...])   # the same answer, whole

Backends (``llm.backend``): ``auto`` (the default: the local model when its package is
installed, else ``echo``; :func:`select_backend` says which and why), ``local`` (SmolLM2-135M-
Instruct on the CPU, in process: :mod:`coda_lite.llm.local`), ``echo`` (answers from the
retrieved memories), ``ollama`` and ``openai`` (streaming over HTTP: :mod:`coda_lite.llm.http`).
A backend that cannot answer raises :class:`LLMError` naming what failed.
"""

from coda_lite.llm.echo import EchoLLM
from coda_lite.llm.factory import BACKENDS, make_llm, select_backend
from coda_lite.llm.types import (
    LLMError,
    LLMResult,
    LLMTimeoutError,
    build_messages,
    count_tokens,
    generate_from_stream,
)

__all__ = [
    "BACKENDS",
    "EchoLLM",
    "LLMError",
    "LLMResult",
    "LLMTimeoutError",
    "build_messages",
    "count_tokens",
    "generate_from_stream",
    "make_llm",
    "select_backend",
]
