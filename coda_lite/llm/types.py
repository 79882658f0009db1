"""What every language-model backend shares: the result, the errors, the prompt, a token count.

result = LLMResult("Your name is Ada.", "echo", input_tokens=12, output_tokens=4)
messages = build_messages("You are Coda.", "What is my name?", [{"content": "My name is Ada."}])
count_tokens("Hello, world!")   # 4: a word-and-punctuation estimate, not a tokenizer's count
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LLMResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    provider: str = ""  # gen_ai.provider.name: echo, transformers, ollama, openai
    prompt: tuple[Mapping[str, str], ...] = ()  # the chat messages sent
    finish_reason: str = "stop"  # why generation ended: "stop", or "length" (token budget)
    response_model: str = ""  # the model the backend says answered, when it says
    usage_estimated: bool = False  # token counts estimated (count_tokens), not the model's own


class LLMError(RuntimeError):
    """The model could not answer; the message names the backend and what failed."""


class LLMTimeoutError(LLMError, TimeoutError):
    """The model did not answer within ``llm.timeout`` (the server may answer its probe)."""


_TOKENS = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A rough, deterministic token count (words and punctuation)."""
    return len(_TOKENS.findall(text))


def build_messages(
    system: str, query: str, context: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The chat prompt: the system prompt, the retrieved memories, the user's words."""
    if context:
        facts = "\n".join(f"- {m['content']}" for m in context)
        system = f"{system}\nThings the user told you earlier:\n{facts}"
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


async def generate_from_stream(
    llm: Any, query: str, context: Sequence[Mapping[str, Any]]
) -> LLMResult:
    """The final :class:`LLMResult` of ``llm.stream`` (for backends that only stream)."""
    result: LLMResult | None = None
    async for item in llm.stream(query, context):
        if isinstance(item, LLMResult):
            result = item
    if result is None:
        raise LLMError(f"{type(llm).__name__}: the stream ended without a result")
    return result
