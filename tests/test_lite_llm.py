"""LLM backends: echo offline; ollama and OpenAI-compatible against real local HTTP servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from coda_lite.config import LlmConfig
from coda_lite.llm import EchoLLM, LLMError, LLMResult, make_llm
from coda_lite.llm import http as llm_module
from coda_lite.llm.http import OllamaLLM, OpenAICompatLLM
from coda_otel.protocols import Component
from tests.support import free_port

CTX = [{"id": "1", "content": "I live in Lisbon.", "score": 0.5, "topics": ["location"]}]


async def test_echo_answers_from_the_retrieved_memory() -> None:
    llm = EchoLLM()
    r = await llm.generate("Where do I live?", CTX)
    assert r.text == "You told me you live in Lisbon."
    assert r.model == "echo" and r.input_tokens > r.output_tokens > 0
    r2 = await llm.generate("What is my name?", [{"content": "My name is Ada."}])
    assert r2.text == "You told me your name is Ada."
    assert "haven't told me" in (await llm.generate("Where do I live?", [])).text
    assert (await llm.generate("Hello there!", [])).text == 'Noted: "Hello there!"'
    assert await llm.generate("Where do I live?", CTX) == r  # deterministic


class FakeServer:
    """A real aiohttp server speaking the ollama and OpenAI chat APIs (records requests)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], str | None]] = []
        self.probes: list[tuple[str, str | None]] = []  # (path, Authorization) of each GET
        self.status = 200
        self.delay = 0.0
        self.probe_status = 200
        self.probe_hangs = False
        self.release = asyncio.Event()  # set at cleanup: a hanging probe handler returns
        self.gated = False  # stream: each piece waits until the client says it got the last
        self.received = asyncio.Event()
        self.gate_timed_out = False
        self.stream_words = ["Lisbon", " is", " sunny."]  # what a streamed answer says
        self.stream_ended = asyncio.Event()  # a streaming handler returned
        self.stream_outcome = ""  # "completed", or "client left" mid-stream
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = web.Application()
        app.router.add_post("/api/chat", self.ollama)
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_get("/api/tags", self.models)
        app.router.add_get("/v1/models", self.models)
        self.runner = web.AppRunner(app)

    async def start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body, request.headers.get("Authorization")))
        if self.delay:
            await asyncio.sleep(self.delay)
        return body

    async def models(self, request: web.Request) -> web.Response:
        self.probes.append((request.path, request.headers.get("Authorization")))
        if self.probe_hangs:
            await self.release.wait()
        if self.probe_status != 200:
            return web.Response(status=self.probe_status, text="model store broken")
        return web.json_response({"models": [{"name": "llama3.2:latest"}], "data": []})

    async def ollama(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if self.status != 200:
            return web.Response(status=self.status, text="model exploded")
        if body.get("stream"):  # NDJSON: one object per line, the last with the counts
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
            try:
                for i, word in enumerate(self.stream_words):
                    # gated: a piece goes only once the client got the one two before (the
                    # client holds one piece back, to pass whole words on)
                    if i >= 2 and self.gated:
                        try:
                            await asyncio.wait_for(self.received.wait(), 10)
                        except TimeoutError:
                            self.gate_timed_out = True
                        self.received.clear()
                    elif i and not self.gated:
                        await asyncio.sleep(0.05)
                    line = {"message": {"role": "assistant", "content": word}, "done": False}
                    await resp.write(json.dumps(line).encode() + b"\n")
                done = {"message": {"content": ""}, "done": True, "prompt_eval_count": 30,
                        "eval_count": 3}  # fmt: skip
                await resp.write(json.dumps(done).encode() + b"\n")
                await resp.write_eof()
                self.stream_outcome = "completed"
            except (ConnectionResetError, ConnectionError):
                self.stream_outcome = "client left"
            finally:
                self.stream_ended.set()
            return resp
        answer = f"ollama heard {body['messages'][-1]['content']}"
        return web.json_response(
            {"message": {"role": "assistant", "content": answer}, "prompt_eval_count": 42,
             "eval_count": 7, "done": True}
        )  # fmt: skip

    async def openai(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        if self.status != 200:
            return web.Response(status=self.status, text="overloaded")
        answer = f"openai heard {body['messages'][-1]['content']}"
        return web.json_response(
            {"choices": [{"message": {"role": "assistant", "content": answer}}],
             "usage": {"prompt_tokens": 11, "completion_tokens": 3}}
        )  # fmt: skip


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    s = FakeServer()
    await s.start()
    yield s
    s.release.set()
    await s.runner.cleanup()


async def test_ollama_backend_round_trip(server: FakeServer) -> None:
    llm = make_llm(LlmConfig(backend="ollama", url=server.url, model="llama3.2"))
    assert isinstance(llm, OllamaLLM) and isinstance(llm, Component)
    try:
        r = await llm.generate("Where do I live?", CTX)
    finally:
        await llm.aclose()
    # the fake server says back the last message: the memory, then the question
    assert r.text == "ollama heard What you know about me: You live in Lisbon. Where do I live?"
    assert (r.model, r.input_tokens, r.output_tokens) == ("llama3.2", 42, 7)
    path, body, _ = server.requests[0]
    assert path == "/api/chat" and body["model"] == "llama3.2" and body["stream"] is False
    # memories reach the model, in the user's turn, said back to them
    assert "You live in Lisbon." in body["messages"][-1]["content"]
    assert body["messages"][-1]["content"].endswith("Where do I live?")


async def test_openai_compatible_backend_round_trip(server: FakeServer) -> None:
    config = LlmConfig(backend="openai", url=server.url + "/v1", model="qwen", api_key="k-123")
    llm = make_llm(config)
    assert isinstance(llm, OpenAICompatLLM)
    try:
        r = await llm.generate("Hello", [])
        beat = await llm.get_heartbeat()
    finally:
        await llm.aclose()
    assert r.text == "openai heard Hello" and (r.input_tokens, r.output_tokens) == (11, 3)
    path, body, auth = server.requests[0]
    assert path == "/v1/chat/completions" and auth == "Bearer k-123"
    assert body["max_tokens"] == config.max_tokens
    assert beat["healthy"] and beat["error_rate"] == 0.0 and beat["url"] == server.url + "/v1"


async def test_unreachable_server_error_names_the_url() -> None:
    port = free_port()  # nothing listens here
    llm = make_llm(LlmConfig(backend="ollama", url=f"http://127.0.0.1:{port}", model="m"))
    with pytest.raises(LLMError, match=rf"ollama request to http://127\.0\.0\.1:{port}/api/chat"):
        await llm.generate("hi", [])
    beat = await llm.get_heartbeat()
    assert beat["error_rate"] == 1.0 and not beat["healthy"] and "127.0.0.1" in beat["last_error"]
    await llm.restart()  # a clean record and a new session, but the server is still down
    beat = await llm.get_heartbeat()
    assert beat["error_rate"] == 0.0 and not beat["healthy"]
    assert f"ollama probe GET http://127.0.0.1:{port}/api/tags failed" in beat["last_error"]
    await llm.aclose()


async def test_http_error_and_timeout_are_clear(server: FakeServer) -> None:
    llm = make_llm(LlmConfig(backend="openai", url=server.url, model="m", timeout=0.2))
    try:
        server.status = 503
        with pytest.raises(LLMError, match="HTTP 503: overloaded"):
            await llm.generate("hi", [])
        server.status, server.delay = 200, 1.0
        with pytest.raises(LLMError, match=r"timed out after 0\.2 s"):
            await llm.generate("hi", [])
        server.delay = 0.0
        assert (await llm.generate("again", [])).text == "openai heard again"
    finally:
        await llm.aclose()


@pytest.fixture
def probe_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Probe results stay fresh for the whole test (no dependence on the clock)."""
    monkeypatch.setattr(llm_module, "PROBE_TTL", 3600.0)


async def test_heartbeat_probes_the_live_server_and_caches_the_answer(
    server: FakeServer, probe_ttl: None
) -> None:
    llm = make_llm(LlmConfig(backend="ollama", url=server.url, model="llama3.2"))
    try:
        beat = await llm.get_heartbeat()
        assert beat["healthy"] and beat["last_error"] is None and beat["probe_ms"] >= 0
        assert server.probes == [("/api/tags", None)]
        server.probe_status = 500  # within the cache period the server is not asked again
        assert (await llm.get_heartbeat())["healthy"] and len(server.probes) == 1
        await llm.restart()  # ...but a restart's verification probes afresh
        beat = await llm.get_heartbeat()
    finally:
        await llm.aclose()
    assert not beat["healthy"] and len(server.probes) == 2
    assert beat["last_error"] == (
        f"ollama probe GET {server.url}/api/tags returned HTTP 500: model store broken"
    )


async def test_heartbeat_reprobes_once_the_cached_answer_is_stale(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_module, "PROBE_TTL", 0.0)
    llm = make_llm(LlmConfig(backend="openai", url=server.url, model="m"))
    try:
        assert (await llm.get_heartbeat())["healthy"]
        server.probe_status = 503
        beat = await llm.get_heartbeat()
    finally:
        await llm.aclose()
    assert not beat["healthy"] and "HTTP 503" in beat["last_error"]
    assert server.probes == [("/v1/models", None)] * 2


async def test_heartbeat_sends_the_api_key(server: FakeServer, probe_ttl: None) -> None:
    config = LlmConfig(backend="openai", url=server.url, model="qwen", api_key="k-123")
    llm = make_llm(config)
    try:
        assert (await llm.get_heartbeat())["healthy"]
    finally:
        await llm.aclose()
    assert server.probes == [("/v1/models", "Bearer k-123")]


async def test_a_hanging_server_is_bounded_by_the_probe_timeout(
    server: FakeServer, probe_ttl: None
) -> None:
    server.probe_hangs = True
    config = LlmConfig(backend="ollama", url=server.url, model="m", connect_timeout=0.3)
    llm = make_llm(config)
    try:
        beat = await asyncio.wait_for(llm.get_heartbeat(), timeout=20)  # generous bound
    finally:
        await llm.aclose()
    assert not beat["healthy"] and server.probes == [("/api/tags", None)]
    assert beat["last_error"] == f"ollama probe GET {server.url}/api/tags timed out after 0.3 s"


async def test_heartbeat_never_raises_on_a_bad_url(probe_ttl: None) -> None:
    llm = make_llm(LlmConfig(backend="ollama", url="ftp://127.0.0.1:1", model="m"))
    try:
        beat = await llm.get_heartbeat()
    finally:
        await llm.aclose()
    assert not beat["healthy"] and "ftp://127.0.0.1:1/api/tags" in beat["last_error"]


def test_config_errors_are_named() -> None:
    with pytest.raises(ValueError, match=r"llm\.model is required"):
        make_llm(LlmConfig(backend="ollama"))
    with pytest.raises(ValueError, match="gpt5"):
        make_llm(LlmConfig(backend="gpt5"))


async def test_ollama_backend_streams_ndjson_as_it_arrives(server: FakeServer) -> None:
    llm = make_llm(LlmConfig(backend="ollama", url=server.url, model="llama3.2"))
    server.gated = True  # the server sends a piece only after the client got the one before
    arrivals: list[object] = []
    try:
        async for item in llm.stream("Weather?", []):
            arrivals.append(item)
            server.received.set()
    finally:
        await llm.aclose()
    pieces = arrivals[:-1]
    assert pieces == ["Lisbon", " is", " sunny."]
    assert not server.gate_timed_out  # each piece reached the caller before the next was sent
    result = arrivals[-1]
    assert result == LLMResult("Lisbon is sunny.", "llama3.2", 30, 3, "ollama", result.prompt)
    assert server.requests[-1][1]["stream"] is True


async def test_a_stream_is_closed_once_the_answer_holds_its_last_sentence(
    server: FakeServer,
) -> None:
    server.stream_words = ["**One**", " two.", "\n- Three", " four.", *[" more"] * 60, " end."]
    config = LlmConfig(backend="ollama", url=server.url, model="m", max_sentences=2)
    llm = OllamaLLM(config)
    try:
        items = [item async for item in llm.stream("Count for me", [])]
    finally:
        await llm.aclose()
    result = items[-1]
    assert isinstance(result, LLMResult)
    assert result.text == "One two. Three four." == "".join(items[:-1])  # spoken, no markdown
    await asyncio.wait_for(server.stream_ended.wait(), 10)
    assert server.stream_outcome == "client left"  # the rest of the answer was never read


async def test_a_stream_from_an_unreachable_server_is_named_then_works(
    server: FakeServer,
) -> None:
    port = free_port()
    llm = make_llm(LlmConfig(backend="ollama", url=f"http://127.0.0.1:{port}", model="m"))
    with pytest.raises(LLMError, match=rf"ollama request to http://127\.0\.0\.1:{port}/api/chat"):
        async for _ in llm.stream("Weather?", []):
            pass
    await llm.aclose()
    llm.base_url = server.url  # the server is back (here: another address)
    try:
        items = [item async for item in llm.stream("Weather?", [])]
    finally:
        await llm.aclose()
    assert isinstance(items[-1], LLMResult) and items[-1].text == "Lisbon is sunny."
