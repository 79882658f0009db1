"""The language model stage: ``generate(query, context) -> LLMResult`` with token usage.

    from coda_lite.llm import make_llm

    llm = make_llm(LlmConfig())                     # echo: offline, deterministic
    r = await llm.generate("Where do I live?", [{"content": "I live in Lisbon.", ...}])
    r.text, r.model, r.input_tokens, r.output_tokens   # 'You told me you live in Lisbon.'

Backends: ``echo`` (default; answers from the retrieved memories), ``ollama`` (``/api/chat``)
and ``openai`` (any OpenAI-compatible ``/v1/chat/completions``: vLLM, llama.cpp, LM Studio).
HTTP errors and timeouts raise :class:`LLMError` naming the URL. Each backend is a health
Component (name ``"llm"``); an HTTP backend's ``get_heartbeat()`` really probes the server
(ollama ``GET /api/tags``, OpenAI-compatible ``GET /v1/models``) within
``min(connect_timeout, 2 s)``, reuses the answer for :data:`PROBE_TTL` s and never raises:
``{'healthy': False, 'probe_ms': 0.8, 'last_error': 'ollama probe GET http://.../api/tags
failed: Cannot connect to host ...', ...}``.
"""

from __future__ import annotations

import asyncio
import re
import time
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


class LLMTimeoutError(LLMError, TimeoutError):
    """The model did not answer within ``llm.timeout`` (the server may answer its probe)."""


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


PROBE_TTL = 2.0  # s a probe's answer is reused: a fast watchdog does not hammer the server
PROBE_TIMEOUT_MAX = 2.0  # s, upper bound on one probe (a lower connect_timeout lowers it)


@dataclass(frozen=True)
class _Probe:
    at: float  # time.monotonic() when it finished
    ms: float
    error: str | None  # None: the server answered 2xx


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
        self._probe_result: _Probe | None = None

    chat_path = ""
    probe_path = ""  # a cheap GET (lists the models) that answers 2xx while the server is up

    @property
    def api_base(self) -> str:
        return self.base_url

    @property
    def endpoint(self) -> str:
        return self.api_base + self.chat_path

    @property
    def probe_url(self) -> str:
        return self.api_base + self.probe_path

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
                raise LLMTimeoutError(
                    f"{where} timed out after {self.config.timeout:g} s"
                ) from None
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
        """Healthy only when the server answers the probe with 2xx and recent calls mostly work."""
        probe = self._probe_result
        if probe is None or time.monotonic() - probe.at >= PROBE_TTL:
            try:
                probe = self._probe_result = await self._probe()
            except Exception as exc:  # never raise from a heartbeat
                probe = _Probe(time.monotonic(), 0.0, f"{self.backend} probe failed: {exc!r}")
        beat = self.stats.heartbeat(
            healthy=probe.error is None and self.stats.error_rate < 0.5,
            models_loaded=True,
            backend=self.backend,
            url=self.base_url,
            probe_ms=round(probe.ms, 3),
        )
        if probe.error is not None:
            beat["last_error"] = probe.error
        return beat

    async def _probe(self) -> _Probe:
        url = self.probe_url
        limit = min(self.config.connect_timeout, PROBE_TIMEOUT_MAX)
        where = f"{self.backend} probe GET {url}"
        start = time.perf_counter()
        error: str | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=limit)
            async with self._get_session().get(url, timeout=timeout) as resp:
                if not 200 <= resp.status < 300:
                    body = (await resp.text())[:200]
                    error = f"{where} returned HTTP {resp.status}: {body}"
        except TimeoutError:
            error = f"{where} timed out after {limit:g} s"
        except aiohttp.ClientError as exc:
            error = f"{where} failed: {exc}"
        ms = (time.perf_counter() - start) * 1000.0
        return _Probe(time.monotonic(), ms, error)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    async def restart(self) -> None:
        await self.aclose()
        self._probe_result = None  # the verifying heartbeat probes afresh
        self.stats.reset_window()

    async def force_restart(self) -> None:
        await self.restart()


class OllamaLLM(_HttpLLM):
    backend = "ollama"
    default_url = "http://127.0.0.1:11434"
    chat_path, probe_path = "/api/chat", "/api/tags"

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        options = {"temperature": self.config.temperature, "num_predict": self.config.max_tokens}
        return {"model": self.model, "messages": messages, "stream": False, "options": options}

    def _parse(self, data: Any) -> tuple[str, int | None, int | None]:
        text = str(data["message"]["content"])
        return text, data.get("prompt_eval_count"), data.get("eval_count")


class OpenAICompatLLM(_HttpLLM):
    backend = "openai"
    default_url = "http://127.0.0.1:8000"
    chat_path, probe_path = "/chat/completions", "/models"

    @property
    def api_base(self) -> str:
        return self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"

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
