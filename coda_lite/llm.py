"""The language model stage: ``generate(query, context) -> LLMResult`` with token usage.

    from coda_lite.llm import make_llm

    llm = make_llm(LlmConfig())                     # echo: offline, deterministic
    r = await llm.generate("Where do I live?", [{"content": "I live in Lisbon.", ...}])
    r.text, r.model, r.input_tokens, r.output_tokens   # 'You told me you live in Lisbon.'

Backends: ``echo`` (default; answers from the retrieved memories), ``ollama`` (``/api/chat``)
and ``openai`` (any OpenAI-compatible ``/v1/chat/completions``: vLLM, llama.cpp, LM Studio).
HTTP errors and timeouts raise :class:`LLMError` naming the URL. Each backend is a health
Component (name ``"llm"``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from coda_lite.components import CallStats
from coda_lite.config import LlmConfig


@dataclass(frozen=True)
class LLMResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int


class LLMError(RuntimeError):
    """The model could not answer; the message names the backend and URL."""


class LLM(Protocol):
    name: str

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult: ...


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
    if context:
        facts = "\n".join(f"- {m['content']}" for m in context)
        system = f"{system}\nThings the user told you earlier:\n{facts}"
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


class EchoLLM:
    """Deterministic and offline: says back what it remembers that is relevant."""

    name = "llm"
    model = "echo"

    def __init__(self, config: LlmConfig | None = None) -> None:
        self.config = config or LlmConfig()
        self.stats = CallStats()

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult:
        with self.stats.track(query):
            q = query.strip()
            question = q.endswith("?") or bool(_QUESTION_START.match(q))
            if context and question:
                text = f"You told me {second_person(str(context[0]['content']))}."
            elif context:
                remembered = second_person(str(context[0]["content"]))
                text = f'Noted: "{q}" I also remember {remembered}.'
            elif question:
                text = f"I don't know yet; you haven't told me. You asked: \"{q}\""
            else:
                text = f'Noted: "{q}"'
            prompt = build_messages(self.config.system_prompt, q, context)
            n_in = sum(count_tokens(m["content"]) for m in prompt)
            return LLMResult(text, self.model, n_in, count_tokens(text))

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


class _HttpLLM:
    name = "llm"
    backend = "http"
    default_url = ""

    def __init__(self, config: LlmConfig) -> None:
        if not config.model:
            raise ValueError(f"llm.model is required for the {self.backend} backend")
        self.config = config
        self.model = config.model
        self.base_url = (config.url or self.default_url).rstrip("/")
        self.stats = CallStats()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        raise NotImplementedError

    def _parse(self, data: Any) -> tuple[str, int | None, int | None]:
        raise NotImplementedError

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            timeout = aiohttp.ClientTimeout(
                total=self.config.timeout, sock_connect=self.config.connect_timeout
            )
            headers = {"Content-Type": "application/json"}
            if self.config.api_key:
                headers["Authorization"] = f"Bearer {self.config.api_key}"
            self._session = aiohttp.ClientSession(timeout=timeout, headers=headers)
            self._session_loop = loop
        return self._session

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult:
        with self.stats.track(query):
            messages = build_messages(self.config.system_prompt, query, context)
            url = self.endpoint
            where = f"{self.backend} request to {url}"
            try:
                async with self._get_session().post(url, json=self._payload(messages)) as resp:
                    if resp.status != 200:
                        body = (await resp.text())[:200]
                        raise LLMError(f"{where} returned HTTP {resp.status}: {body}")
                    data = await resp.json(content_type=None)
            except TimeoutError:
                raise LLMError(f"{where} timed out after {self.config.timeout:g} s") from None
            except aiohttp.ClientError as exc:
                raise LLMError(f"{where} failed: {exc}") from exc
            except ValueError as exc:
                raise LLMError(f"{where} returned a body that is not JSON: {exc}") from exc
            try:
                text, n_in, n_out = self._parse(data)
            except (KeyError, IndexError, TypeError) as exc:
                raise LLMError(f"{where} returned an unexpected response shape: {exc!r}") from exc
            n_in = n_in if n_in is not None else sum(count_tokens(m["content"]) for m in messages)
            n_out = n_out if n_out is not None else count_tokens(text)
            return LLMResult(text.strip(), self.model, int(n_in), int(n_out))

    async def get_heartbeat(self) -> dict[str, Any]:
        return self.stats.heartbeat(
            healthy=self.stats.error_rate < 0.5,
            models_loaded=True,
            backend=self.backend,
            url=self.base_url,
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def restart(self) -> None:
        await self.aclose()
        self.stats.reset_window()

    async def force_restart(self) -> None:
        await self.restart()


class OllamaLLM(_HttpLLM):
    backend = "ollama"
    default_url = "http://127.0.0.1:11434"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/api/chat"

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        options = {"temperature": self.config.temperature, "num_predict": self.config.max_tokens}
        return {"model": self.model, "messages": messages, "stream": False, "options": options}

    def _parse(self, data: Any) -> tuple[str, int | None, int | None]:
        return (
            str(data["message"]["content"]),
            data.get("prompt_eval_count"),
            data.get("eval_count"),
        )


class OpenAICompatLLM(_HttpLLM):
    backend = "openai"
    default_url = "http://127.0.0.1:8000"

    @property
    def endpoint(self) -> str:
        base = self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"
        return f"{base}/chat/completions"

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }

    def _parse(self, data: Any) -> tuple[str, int | None, int | None]:
        usage = data.get("usage") or {}
        text = str(data["choices"][0]["message"]["content"])
        return text, usage.get("prompt_tokens"), usage.get("completion_tokens")


def make_llm(config: LlmConfig) -> EchoLLM | OllamaLLM | OpenAICompatLLM:
    if config.backend == "echo":
        return EchoLLM(config)
    if config.backend == "ollama":
        return OllamaLLM(config)
    if config.backend in {"openai", "openai-compatible"}:
        return OpenAICompatLLM(config)
    raise ValueError(f"unknown llm.backend {config.backend!r} (choose echo, ollama or openai)")
