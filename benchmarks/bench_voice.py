"""Voice latency on the real local model (SmolLM2-135M-Instruct, in process, greedy).

    python -m benchmarks.run --only voice

Rows:

* time to first token, time to first audio and output tokens per second of streamed turns;
* streamed time to first audio against the same answer's non-streaming latency (the whole
  answer, then its whole synthesis): budget 0.5x, for answers of 30 or more tokens;
* the cost of observing a real-model turn: ``build_app`` (caches never hit) against
  ``build_pipeline`` with the NullObserver, the same turns, alternating: budget 1.01x;
* how often the model answers from memory on a small scripted set (told a fact, then asked
  it): a 135M model is weak, and the figure says how weak; no budget.

Greedy decoding (temperature 0) makes both variants generate the same tokens. Skipped (with
a note) when the local model is not installed. The converted model is kept in
``$CODA_LLM_MODELS_DIR`` or ``~/.coda/models`` (the demo's), so it is converted once.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, run_async
from benchmarks.pipelines import (
    NO_CACHE_HITS,
    bench_config,
    bench_home,
    local_model_env,
    otel_env,
)
from coda_lite.config import LlmConfig
from coda_lite.llm.local import local_model_problem
from coda_lite.pipeline.build import build_pipeline
from coda_lite.pipeline.conversation import ConversationManager
from coda_lite.service.app import build_app

#: Questions whose answers run to several sentences (30+ tokens).
LONG_ANSWERS = (
    "Tell me three facts about Paris.",
    "Describe how to make a cup of tea, step by step.",
    "Why is the sky blue? Explain it simply.",
)
#: (a fact the user tells, a question about it, a word the answer must contain)
MEMORY_SET = (
    ("My name is Ada.", "What is my name?", "ada"),
    ("I live in Lisbon.", "Where do I live?", "lisbon"),
    ("My favourite drink is green tea.", "What is my favourite drink?", "tea"),
    ("I work as a software engineer.", "What is my job?", "engineer"),
    ("My dog is called Rex.", "What is my dog called?", "rex"),
)


async def _turn(manager: ConversationManager, text: str) -> Any:
    return await manager.process_user_input(text, session_id="bench")


async def _streaming(home: Path, tts: str, rounds: int) -> list[Result]:
    pipeline = build_pipeline(bench_config(home / "stream", tts=tts, **local_model_env()))
    whole = ConversationManager(
        pipeline.stt, pipeline.memory, pipeline.llm, pipeline.tts, streaming=False
    )
    ttft, ttfa, rate, long_ttfa, whole_lat, tokens = [], [], [], [], [], []
    try:
        await _turn(pipeline.manager, "Hello.")  # load the model
        for _ in range(rounds):
            for question in LONG_ANSWERS:
                s = await _turn(pipeline.manager, question)
                w = await _turn(whole, question)
                if s.latency is None or w.latency is None:
                    continue
                ttft.append(s.latency.time_to_first_token_us / 1e6)
                ttfa.append(s.latency.time_to_first_audio_us / 1e6)
                if s.latency.output_tokens_per_second:
                    rate.append(s.latency.output_tokens_per_second)
                tokens.append(s.latency.output_tokens)
                if s.latency.output_tokens >= 30:
                    long_ttfa.append(s.latency.time_to_first_audio_us / 1e6)
                    whole_lat.append(w.latency.time_to_first_audio_us / 1e6)
    finally:
        await pipeline.aclose()
    note = f"SmolLM2-135M-Instruct greedy, TTS {tts}; {len(ttfa)} turns, median"
    rows = [
        Result("voice", "time to first token (streamed)", statistics.median(ttft), "s", note=note),
        Result("voice", "time to first audio (streamed)", statistics.median(ttfa), "s", note=note),
        Result("voice", "output tokens per second", statistics.median(rate), "tokens/s", note=note),
    ]
    if long_ttfa:
        rows.append(
            Result(
                "voice",
                "time to first audio, streamed (answers of 30+ tokens)",
                statistics.median(long_ttfa),
                "s",
                "same answer, not streamed (whole answer, then speech)",
                statistics.median(whole_lat),
                budget_ratio=0.5,
                note=f"{len(long_ttfa)} answers; median {statistics.median(tokens):.0f} tokens",
            )
        )
    return rows


async def _overhead(home: Path, tts: str, rounds: int) -> Result:
    bare = build_pipeline(bench_config(home / "bare", tts=tts, **local_model_env()))
    with otel_env():
        observed = build_app(
            bench_config(home / "observed", tts=tts, **local_model_env(), **NO_CACHE_HITS)
        )
    t_bare: list[float] = []
    t_obs: list[float] = []
    question = LONG_ANSWERS[0]
    try:
        for m in (bare.manager, observed.pipeline.manager):
            await _turn(m, question)  # load the model, warm the caches of the OS
        for r in range(rounds):
            order = [(bare.manager, t_bare), (observed.pipeline.manager, t_obs)]
            for manager, times in order if r % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                await _turn(manager, question)
                times.append(time.perf_counter() - started)
    finally:
        await observed.aclose()
        await bare.aclose()
    return Result(
        "voice",
        "instrumented real-model turn (build_app, caches never hit)",
        statistics.median(t_obs),
        "s",
        "uninstrumented (NullObserver)",
        statistics.median(t_bare),
        budget_ratio=1.01,
        note=f"whole turn, {len(t_obs)} turns each, alternating, median",
    )


async def _from_memory(home: Path) -> Result:
    pipeline = build_pipeline(bench_config(home / "memory", tts="none", **local_model_env()))
    answered = []
    try:
        for fact, _, _ in MEMORY_SET:
            await _turn(pipeline.manager, fact)
        for _, question, word in MEMORY_SET:
            answer = (await _turn(pipeline.manager, question)).response
            answered.append(word in answer.lower())
    finally:
        await pipeline.aclose()
    return Result(
        "voice",
        "answers from memory (told a fact, then asked it)",
        sum(answered),
        f"of {len(answered)}",
        note="scripted set in benchmarks/bench_voice.py; a 135M model often ignores the facts",
    )


async def _measure(quick: bool) -> list[Result]:
    problem = local_model_problem(LlmConfig(backend="local"))
    if problem is not None:
        return [Result("voice", f"skipped: {problem}", 0, "-")]
    tts = "espeak-ng" if shutil.which("espeak-ng") else "none"
    with bench_home() as home:
        rows = await _streaming(home, tts, 1 if quick else 2)
        rows.append(await _overhead(home, tts, 2 if quick else 8))
        rows.append(await _from_memory(home))
    return rows


def run(quick: bool) -> list[Result]:
    return run_async(_measure(quick))  # type: ignore[no-any-return]
