"""The real local model answers development-set questions from memory, in spoken form.

Each pair's fact goes to the model as the memory retrieval would hand it over (extracted
from what the user said); the answer must be at most ``llm.max_sentences`` sentences and
``llm.max_words`` words with no markdown, and, for the pairs the shipped prompt answers
reliably (greedy decoding, so the same every run), hold the expected fact. The share over the
whole set is measured by ``python -m benchmarks.run --only answers``, not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_answers
from benchmarks.bench_answers import contains_fact, load_devset
from coda_lite.config import LlmConfig
from coda_lite.llm.local import LocalLLM
from coda_lite.llm.spoken import sentence_count
from coda_lite.memory.extract import extract_facts
from tests.model_harness import require_local_model

pytestmark = [pytest.mark.slow, pytest.mark.model]

#: Questions of the development set whose answers must contain the fact.
RELIABLE = ("Where do I live?", "What is my favourite colour?", "What is my door code?")


async def test_answers_are_short_and_hold_the_remembered_fact(models_dir: Path) -> None:
    require_local_model()
    config = LlmConfig(backend="local")  # the shipped defaults: prompt, decoding, caps
    llm = LocalLLM(config, models_dir)
    pairs = {item.asked: item for item in load_devset()}
    for question in (*RELIABLE, "What is my son's name?", "What instrument do I have?"):
        item = pairs[question]
        context = [{"content": f.content, "score": 0.6} for f in extract_facts(item.told)]
        result = await llm.generate(question, context)
        answer = result.text
        assert answer and sentence_count(answer) <= config.max_sentences, answer
        assert len(answer.split()) <= config.max_words, answer
        assert not any(mark in answer for mark in ("**", "`", "\n", "#")), answer
        if question in RELIABLE:
            assert contains_fact(answer, item.expect), f"{question} -> {answer}"
        assert "What you know about me" in result.prompt[-1]["content"]


async def test_the_model_stops_at_the_sentence_cap(models_dir: Path) -> None:
    """Asked for a long answer, the model is stopped after one sentence (few tokens spent)."""
    require_local_model()
    capped = LocalLLM(LlmConfig(backend="local", max_sentences=1, max_tokens=96), models_dir)
    uncapped = LocalLLM(
        LlmConfig(backend="local", max_sentences=50, max_words=500, max_tokens=96), models_dir
    )
    question = "Describe how to make a cup of tea, step by step."
    whole = await uncapped.generate(question, [])
    assert sentence_count(whole.text) >= 2, whole.text  # the question gets a long answer
    result = await capped.generate(question, [])
    assert sentence_count(result.text) == 1, result.text
    assert whole.text.startswith(result.text.rstrip("."))  # greedy: the same first sentence
    assert result.output_tokens < whole.output_tokens  # generation stopped, not trimmed


def test_quick_answers_benchmark_rows(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The --quick subset through the real pipeline: the rows the benchmark table shows."""
    require_local_model()
    monkeypatch.setenv("CODA_LLM_MODELS_DIR", str(models_dir))
    rows = {r.name: r for r in bench_answers.run(quick=True)}
    share = rows["answers from memory (dev set)"]
    assert share.unit == "%" and 0 <= share.value <= 100 and "of 12" in share.note
    assert rows["the right memory retrieved"].value == 100  # every fact is found
    assert rows["answers within 2 sentences"].value == 100
    assert 0 < rows["answer length (median)"].value <= 40
