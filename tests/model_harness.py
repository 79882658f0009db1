"""The real local model for tests: one conversion per test session, shared by every module.

    llm = local_llm(models_dir)                 # LocalLLM (SmolLM2-135M-Instruct), greedy
    with openai_server(models_dir, log) as (url, model):   # a real `transformers serve`
        ...
    async with ollama_server(llm) as url:       # ollama's NDJSON API, the real model behind

``models_dir`` (the fixture in the modules that use it) is one folder per pytest session, so
the GGUF is converted once; on a laptop without the model package the tests skip with the
reason, and under ``CI=true`` they fail.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from aiohttp import web

from coda_lite.config import LlmConfig
from coda_lite.llm import LLMResult
from coda_lite.llm.local import LocalLLM, load_model, local_model_problem, packaged_gguf
from tests.prometheus_harness import ManagedProcess, http_json, wait_until
from tests.support import IN_CI, free_port


def require_local_model() -> Path:
    """The packaged GGUF; skip (laptop) or fail (CI) when the model cannot run here."""
    problem = local_model_problem(LlmConfig(backend="local"))
    if problem is not None:
        if IN_CI:
            pytest.fail(f"local model unavailable: {problem}")
        pytest.skip(f"local model unavailable: {problem}")
    path = packaged_gguf()
    assert path is not None
    return path


def local_llm(models_dir: Path, **config: object) -> LocalLLM:
    """The real model, greedy (temperature 0) so its answers repeat."""
    settings: dict[str, object] = {"backend": "local", "temperature": 0.0, "max_tokens": 48}
    settings.update(config)
    return LocalLLM(LlmConfig(**settings), models_dir)  # type: ignore[arg-type]


def converted_dir(models_dir: Path) -> Path:
    """The folder holding the converted model (converting it now if needed)."""
    gguf = require_local_model()
    load_model(gguf, models_dir)
    (folder,) = [p for p in models_dir.iterdir() if p.is_dir() and not p.name.endswith(".partial")]
    return folder


@contextmanager
def openai_server(models_dir: Path, log: Path) -> Iterator[tuple[str, str]]:
    """`transformers serve` on a free loopback port, serving the converted local model."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if exe is None:
        msg = "the transformers CLI (transformers[serving]) is not installed"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    model = str(converted_dir(models_dir))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [exe, "serve", "--host", "127.0.0.1", "--port", str(port), model]
    with ManagedProcess(argv, log) as proc:
        wait_until(
            lambda: http_json(f"{base}/v1/models", timeout=2)[0] == 200,
            120.0,
            "transformers serve /v1/models",
            proc,
            interval=0.5,
        )
        yield base, model


@asynccontextmanager
async def ollama_server(llm: LocalLLM) -> AsyncIterator[str]:
    """A loopback server speaking ollama's streaming ``/api/chat`` (NDJSON), answered by the
    real local model token by token; yields its base URL."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        query = body["messages"][-1]["content"]
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        async for item in llm.stream(query, []):
            if isinstance(item, LLMResult):
                line = {"done": True, "message": {"role": "assistant", "content": ""},
                        "prompt_eval_count": item.input_tokens,
                        "eval_count": item.output_tokens}  # fmt: skip
            else:
                line = {"done": False, "message": {"role": "assistant", "content": item}}
            await resp.write(json.dumps(line).encode() + b"\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
