"""The HTTP backends: ollama (``/api/chat``) and any OpenAI-compatible ``/v1/chat/completions``.

    llm = OpenAICompatLLM(LlmConfig(backend="openai", url="http://127.0.0.1:8000", model="m"))
    async for item in llm.stream("Hi", []):       # Server-Sent Events, token by token
        ...                                       # str deltas, then an LLMResult
    r = await llm.generate("Hi", [])              # one non-streaming request

``stream`` reads ollama's NDJSON lines or the OpenAI ``data:`` events as they arrive.
HTTP errors, timeouts and malformed streams raise :class:`LLMError` naming the URL. Each
backend is a health Component (name ``"llm"``) whose ``get_heartbeat()`` really probes the
server (ollama ``GET /api/tags``, OpenAI-compatible ``GET /v1/models``) within
``min(connect_timeout, 2 s)``, reuses the answer for :data:`PROBE_TTL` s and never raises:
``{'healthy': False, 'probe_ms': 0.8, 'last_error': 'ollama probe GET http://.../api/tags
failed: Cannot connect to host ...', ...}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from coda_lite.config import LlmConfig
from coda_lite.llm.spoken import SpokenAnswer, spoken_text
from coda_lite.llm.types import LLMError, LLMResult, LLMTimeoutError, build_messages, count_tokens
from coda_lite.stats import CallStats

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
    provider = ""
    default_url = ""

    def __init__(
        self, config: LlmConfig, *, request_headers: Callable[[], Mapping[str, str]] | None = None
    ) -> None:
        """``request_headers`` adds headers to each request, computed when it is sent (the
        composition root passes the caller's trace context this way)."""
        if not config.model:
            raise ValueError(f"llm.model is required for the {self.backend} backend")
        self.config = config
        self.model = config.model
        self.base_url = (config.url or self.default_url).rstrip("/")
        self.stats = CallStats()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._probe_result: _Probe | None = None
        self._request_headers = request_headers

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

    def _payload(self, messages: list[dict[str, str]], *, stream: bool) -> dict[str, Any]:
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

    @asynccontextmanager
    async def _post(
        self, messages: list[dict[str, str]], *, stream: bool
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST the chat request; HTTP errors, timeouts and bad bodies become LLMError."""
        url = self.endpoint
        where = f"{self.backend} request to {url}"
        try:
            extra = dict(self._request_headers()) if self._request_headers is not None else None
            async with self._get_session().post(
                url, json=self._payload(messages, stream=stream), headers=extra
            ) as resp:
                if resp.status != 200:
                    body = (await resp.text())[:200]
                    raise LLMError(f"{where} returned HTTP {resp.status}: {body}")
                yield resp
        except TimeoutError:
            raise LLMTimeoutError(f"{where} timed out after {self.config.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise LLMError(f"{where} failed: {exc}") from exc
        except ValueError as exc:
            raise LLMError(f"{where} returned a body that is not JSON: {exc}") from exc
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"{where} returned an unexpected response shape: {exc!r}") from exc

    def _result(
        self,
        messages: list[dict[str, str]],
        text: str,
        n_in: int | None,
        n_out: int | None,
        meta: Mapping[str, str] | None = None,
    ) -> LLMResult:
        """The result; ``meta`` holds what the server said of its answer (``model``, the
        model that answered, and ``finish_reason``: ``stop``, or ``length`` when cut by
        ``max_tokens``)."""
        estimated = n_in is None or n_out is None  # the server did not report its usage
        n_in = n_in if n_in is not None else sum(count_tokens(m["content"]) for m in messages)
        n_out = n_out if n_out is not None else count_tokens(text)
        return LLMResult(
            text.strip(),
            self.model,
            int(n_in),
            int(n_out),
            self.provider,
            tuple(messages),
            finish_reason=(meta or {}).get("finish_reason") or "stop",
            response_model=(meta or {}).get("model") or "",
            usage_estimated=estimated,
        )

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult:
        """One non-streaming request: the whole answer at once (shaped for speech)."""
        with self.stats.track(query):
            messages = build_messages(self.config.system_prompt, query, context)
            async with self._post(messages, stream=False) as resp:
                data = await resp.json(content_type=None)
                text, n_in, n_out = self._parse(data)
            meta: dict[str, str] = {}
            self._meta(data, meta)
            spoken = spoken_text(text, self.config.max_sentences, self.config.max_words)
            return self._result(messages, spoken, n_in, n_out, meta)

    async def stream(
        self, query: str, context: Sequence[Mapping[str, Any]]
    ) -> AsyncIterator[str | LLMResult]:
        """The answer as the server streams it (shaped for speech), then the :class:`LLMResult`.

        Once the answer holds its last sentence the stream is closed, which cancels the
        generation on servers that stop when their client goes (ollama, vLLM, llama.cpp)."""
        with self.stats.track(query):
            messages = build_messages(self.config.system_prompt, query, context)
            shaper = SpokenAnswer(self.config.max_sentences, self.config.max_words)
            parts: list[str] = []
            usage: list[int | None] = [None, None]
            meta: dict[str, str] = {}
            async with self._post(messages, stream=True) as resp:
                if resp.content_type == "application/json":  # the server did not stream
                    data = await resp.json()
                    text, usage[0], usage[1] = self._parse(data)
                    self._meta(data, meta)
                    deltas = [text]
                    for spoken in (shaper.feed(text), shaper.finish()):
                        if spoken:
                            parts.append(spoken)
                            yield spoken
                else:
                    async for raw in resp.content:
                        deltas = self._parse_line(raw.decode("utf-8").strip(), usage, meta)
                        for spoken in map(shaper.feed, deltas):
                            if spoken:
                                parts.append(spoken)
                                yield spoken
                        if shaper.done:
                            resp.close()  # stop reading: the rest would never be spoken
                            break
            rest = shaper.finish()
            if rest:
                parts.append(rest)
                yield rest
        yield self._result(messages, "".join(parts), usage[0], usage[1], meta)

    def _parse_line(
        self, line: str, usage: list[int | None], meta: dict[str, str] | None = None
    ) -> list[str]:
        """The text deltas in one streamed line; token counts go into ``usage``, the
        answering model and finish reason into ``meta``."""
        raise NotImplementedError

    def _meta(self, data: Any, meta: dict[str, str]) -> None:
        """The answering model and the finish reason, from one response object."""
        raise NotImplementedError

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
    provider = "ollama"
    backend = "ollama"
    default_url = "http://127.0.0.1:11434"
    chat_path, probe_path = "/api/chat", "/api/tags"

    def _payload(self, messages: list[dict[str, str]], *, stream: bool) -> dict[str, Any]:
        options = {"temperature": self.config.temperature, "num_predict": self.config.max_tokens}
        return {"model": self.model, "messages": messages, "stream": stream, "options": options}

    def _parse_line(
        self, line: str, usage: list[int | None], meta: dict[str, str] | None = None
    ) -> list[str]:
        """One NDJSON object: ``{"message": {"content": ...}, "done": ..., "eval_count": ...}``."""
        if not line:
            return []
        data = json.loads(line)
        if "error" in data:
            raise LLMError(f"ollama stream from {self.endpoint} reported: {data['error']}")
        if meta is not None:
            self._meta(data, meta)
        if data.get("done"):
            usage[0], usage[1] = data.get("prompt_eval_count"), data.get("eval_count")
        text = str((data.get("message") or {}).get("content") or "")
        return [text] if text else []

    def _parse(self, data: Any) -> tuple[str, int | None, int | None]:
        text = str(data["message"]["content"])
        return text, data.get("prompt_eval_count"), data.get("eval_count")

    def _meta(self, data: Any, meta: dict[str, str]) -> None:
        if isinstance(data.get("model"), str):
            meta["model"] = data["model"]
        if data.get("done") and isinstance(data.get("done_reason"), str):
            meta["finish_reason"] = data["done_reason"]


class OpenAICompatLLM(_HttpLLM):
    provider = "openai"
    backend = "openai"
    default_url = "http://127.0.0.1:8000"
    chat_path, probe_path = "/chat/completions", "/models"

    @property
    def api_base(self) -> str:
        return self.base_url if self.base_url.endswith("/v1") else f"{self.base_url}/v1"

    def _payload(self, messages: list[dict[str, str]], *, stream: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if stream:
            payload.update(stream=True, stream_options={"include_usage": True})
        return payload

    def _parse_line(
        self, line: str, usage: list[int | None], meta: dict[str, str] | None = None
    ) -> list[str]:
        """One Server-Sent Event line: ``data: {"choices": [{"delta": ...}], "usage": ...}``."""
        if not line.startswith("data:"):
            return []  # blank separators, comments, event names
        payload = line[5:].strip()
        if payload == "[DONE]":
            return []
        data = json.loads(payload)
        if "error" in data:
            raise LLMError(f"openai stream from {self.endpoint} reported: {data['error']}")
        if meta is not None:
            self._meta(data, meta)
        if data.get("usage"):
            usage[0] = data["usage"].get("prompt_tokens")
            usage[1] = data["usage"].get("completion_tokens")
        out = []
        for choice in data.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                out.append(str(text))
        return out

    def _parse(self, data: Any) -> tuple[str, int | None, int | None]:
        usage = data.get("usage") or {}
        text = str(data["choices"][0]["message"]["content"])
        return text, usage.get("prompt_tokens"), usage.get("completion_tokens")

    def _meta(self, data: Any, meta: dict[str, str]) -> None:
        if isinstance(data.get("model"), str):
            meta["model"] = data["model"]
        for choice in data.get("choices") or []:
            if isinstance(choice.get("finish_reason"), str):
                meta["finish_reason"] = choice["finish_reason"]
