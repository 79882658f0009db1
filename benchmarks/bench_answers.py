"""Answers worth hearing: the real local model, grounded in what the user said, spoken short.

    python -m benchmarks.run --only answers            # the whole development set (36 pairs)
    python -m benchmarks.run --only answers --quick    # two pairs per session (12)

The development set (``coda_lite/data/devset.jsonl``) holds sessions in which a user tells
facts (names, places, numbers, things owned, preferences, people) and then asks about them.
Each session runs in its own memory (the session is the owner): its facts are told first
(stored through the memory manager's ``add_interaction``, the pipeline's own memory update,
without spending a model answer on each), then every question is a real turn through the
whole pipeline with the shipped defaults: retrieval with the real embedding model, the prompt
of :func:`coda_lite.llm.types.build_messages`, SmolLM2-135M-Instruct in process, the spoken-
answer caps and espeak-ng (when installed).

Rows (no budgets; the figures say how good the answers are):

* answers from memory: the share of answers that contain the expected fact (case-insensitive,
  punctuation-blind, whole words: "2" does not match "20");
* the right memory retrieved: the share of questions whose retrieved memories hold the fact
  (what the model could have used: the gap to the row above is the model's);
* answers within ``llm.max_sentences`` sentences, and the median answer length in words;
* time to first audio (the model's first sentence, synthesized), or to the first sentence
  without espeak-ng.

Skipped (with a note) when the local model is not installed. The converted model is kept in
``$CODA_LLM_MODELS_DIR`` or ``~/.coda/models`` (the demo's), so it is converted once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from benchmarks.common import Result, run_async
from benchmarks.pipelines import bench_config, bench_home
from coda_lite.config import LlmConfig
from coda_lite.llm.local import local_model_problem
from coda_lite.llm.spoken import sentence_count
from coda_lite.pipeline.build import Pipeline, build_pipeline

#: Pairs per session in a ``--quick`` run.
QUICK_PER_SESSION = 2


@dataclass(frozen=True)
class Item:
    """One development-set pair: what the user told, what they asked, the words that answer."""

    session: str
    told: str  # "" when an earlier line of the session already told it
    asked: str
    expect: tuple[str, ...]  # any of them in the answer counts


@dataclass(frozen=True)
class Answer:
    item: Item
    text: str
    memories: tuple[str, ...]  # the retrieved memories the model was given
    first_audio_s: float | None  # None: no latency (the turn produced no speech)
    first_sentence_s: float | None


def load_devset(text: str | None = None) -> list[Item]:
    """The development set (the shipped one unless ``text`` is given); ValueError on bad lines."""
    if text is None:
        text = resources.files("coda_lite").joinpath("data/devset.jsonl").read_text("utf-8")
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(
                Item(
                    str(row["session"]),
                    str(row["told"]),
                    str(row["asked"]),
                    tuple(str(e) for e in row["expect"]),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"devset line {n} is not a pair: {exc!r}") from None
        if not items[-1].expect:
            raise ValueError(f"devset line {n} expects nothing")
    return items


def quick_subset(items: Sequence[Item], per_session: int = QUICK_PER_SESSION) -> list[Item]:
    """The first ``per_session`` pairs of each session (their facts are told first)."""
    taken: dict[str, int] = {}
    out = []
    for item in items:
        if taken.get(item.session, 0) < per_session:
            taken[item.session] = taken.get(item.session, 0) + 1
            out.append(item)
    return out


def normalized(text: str) -> str:
    """Lower case, every run of punctuation or space one space: "It's 42!" -> "it s 42"."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def contains_fact(answer: str, expect: Iterable[str]) -> bool:
    """Whether ``answer`` holds one of the expected words as whole words ("2" is not "20")."""
    said = f" {normalized(answer)} "
    return any(f" {normalized(e)} " in said for e in expect if normalized(e))


def _model_env() -> dict[str, str]:
    models = os.environ.get("CODA_LLM_MODELS_DIR") or str(Path("~/.coda/models").expanduser())
    return {"CODA_LLM_BACKEND": "local", "CODA_LLM_MODELS_DIR": models}


async def answer_devset(pipeline: Pipeline, items: Sequence[Item]) -> list[Answer]:
    """Tell each session's facts, then ask its questions as real turns; the answers."""
    owner = {s: f"devset-{s}" for s in dict.fromkeys(i.session for i in items)}
    for item in items:
        if item.told:
            await pipeline.memory.add_interaction(item.told, "", owner=owner[item.session])
    answers = []
    for item in items:
        result = await pipeline.manager.process_user_input(
            item.asked, session_id=owner[item.session]
        )
        lat = result.latency
        answers.append(
            Answer(
                item,
                result.response,
                tuple(str(m["content"]) for m in result.memories_used),
                None if lat is None else lat.time_to_first_audio_us / 1e6,
                None if lat is None else lat.breakdown_us["llm_first_sentence"] / 1e6,
            )
        )
    return answers


def rows(answers: Sequence[Answer], config: LlmConfig, tts: str) -> list[Result]:
    """The benchmark's rows from the answers."""
    n = len(answers)
    hits = [a for a in answers if contains_fact(a.text, a.item.expect)]
    found = [a for a in answers if any(contains_fact(m, a.item.expect) for m in a.memories)]
    short = [a for a in answers if sentence_count(a.text) <= config.max_sentences]
    words = [len(a.text.split()) for a in answers]
    decoding = (
        "greedy" if config.temperature <= 0 else f"T={config.temperature:g} top_p={config.top_p:g}"
    )
    note = f"SmolLM2-135M-Instruct, {decoding}, repetition penalty {config.repetition_penalty:g}"
    missed = [f"{a.item.asked} -> {a.text}" for a in answers if a not in hits]
    out = [
        Result("answers", "answers from memory (dev set)", 100 * len(hits) / n, "%",
               note=f"{len(hits)} of {n}; {note}", extra={"missed": missed}),
        Result("answers", "the right memory retrieved", 100 * len(found) / n, "%",
               note=f"{len(found)} of {n}; retrieval k and min_score as configured"),
        Result("answers", f"answers within {config.max_sentences} sentences",
               100 * len(short) / n, "%", note=f"{len(short)} of {n}"),
        Result("answers", "answer length (median)", statistics.median(words), "words",
               note=f"max {max(words)}; word budget {config.max_words}"),
    ]  # fmt: skip
    audio = [a.first_audio_s for a in answers if a.first_audio_s is not None]
    sentence = [a.first_sentence_s for a in answers if a.first_sentence_s is not None]
    if tts != "none" and audio:
        out.append(Result("answers", "time to first audio (median)", statistics.median(audio),
                          "s", note=f"{len(audio)} turns, espeak-ng"))  # fmt: skip
    elif sentence:
        first = statistics.median(sentence)
        out.append(Result("answers", "time to first sentence (median)", first, "s",
                          note="no espeak-ng: no audio"))  # fmt: skip
    return out


async def _measure(quick: bool) -> list[Result]:
    problem = local_model_problem(LlmConfig(backend="local"))
    if problem is not None:
        return [Result("answers", f"skipped: {problem}", 0, "-")]
    tts = "espeak-ng" if shutil.which("espeak-ng") else "none"
    items = load_devset()
    if quick:
        items = quick_subset(items)
    with bench_home() as home:
        config = bench_config(home, tts=tts, **_model_env())
        pipeline = build_pipeline(config)
        try:
            answers = await answer_devset(pipeline, items)
        finally:
            await pipeline.aclose()
    return rows(answers, config.llm, tts)


def run(quick: bool) -> list[Result]:
    return run_async(_measure(quick))  # type: ignore[no-any-return]
