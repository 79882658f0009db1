"""The ``echo`` backend: deterministic and offline, it says back what it remembers.

    llm = EchoLLM(LlmConfig(backend="echo"))
    async for item in llm.stream("Where do I live?", [{"content": "I live in Lisbon."}]):
        item          # 'You', ' told', ... then LLMResult(text, "echo", ...)

It is a named test double for the pipeline, not a model: its answers are templates.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from coda_lite.config import LlmConfig
from coda_lite.llm.types import (
    LLMResult,
    build_messages,
    count_tokens,
    generate_from_stream,
    second_person,
)
from coda_lite.stats import CallStats

_QUESTION_START = re.compile(
    r"^(what|where|who|when|why|how|which|do|does|did|is|are|can|could|would|will)\b", re.I
)


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
        yield LLMResult(
            text,
            self.model,
            n_in,
            count_tokens(text),
            self.provider,
            tuple(prompt),
            usage_estimated=True,
        )

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
