"""What every language-model backend shares: the result, the errors, the prompt, a token count.

result = LLMResult("Your name is Ada.", "echo", input_tokens=12, output_tokens=4)
messages = build_messages("You are Coda.", "What is my name?", [{"content": "My name is Ada."}])
messages[-1]["content"]   # 'What you know about me: Your name is Ada.\n\nWhat is my name?'
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


_PRONOUNS = {
    "i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
    "i'm": "you're", "am": "are", "i've": "you've", "i'd": "you'd", "i'll": "you'll",
    "we": "you", "our": "your", "us": "you",
}  # fmt: skip


def second_person(text: str) -> str:
    """'My name is Ada.' -> 'your name is Ada' (what the user told, said back to them)."""
    words = text.strip().rstrip(".!").split()
    out = [_PRONOUNS.get(w.lower(), w) for w in words]
    if out and out[0] not in _PRONOUNS.values() and words and words[0] not in {"I", "I'm"}:
        out[0] = out[0][:1].lower() + out[0][1:]
    return " ".join(out)


def told_you(memory: str) -> str:
    """A remembered fact as the assistant knows it: 'I live in Lisbon.' -> 'You live in Lisbon.'"""
    said = second_person(memory)
    return said[:1].upper() + said[1:] + "."


#: Worked examples, as earlier turns of the chat: answer from the facts that matter (and only
#: from them), in a sentence, and greet or acknowledge briefly when nothing is asked. Their
#: names and places are not in the development set, so a copied example is a miss, not a hit.
FEW_SHOT: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("Your name is Sam.", "Your dog's name is Max."), "What is my name?", "Your name is Sam."),
    (("You live in Rome.", "You work as a baker."), "Where do I live?", "You live in Rome."),
    ((), "Hi there!", "Hello! How can I help you today?"),
    (("You live in Rome.",), "I love jazz music.",
     "Nice, I will remember that you love jazz music."),
)  # fmt: skip


def user_turn(facts: Sequence[str], query: str) -> str:
    """The user's words, with what the assistant knows about them right before (if anything)."""
    if not facts:
        return query
    return f"What you know about me: {' '.join(facts)}\n\n{query}"


def build_messages(
    system: str, query: str, context: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    """The chat prompt: the instruction, the worked examples, then the user's turn.

    The retrieved memories go into the user's turn, right before the question and said back
    in the second person ("You live in Lisbon."): a small model uses facts there and copies
    them into its answer, where facts at the top of a long system prompt are ignored.
    """
    messages = [{"role": "system", "content": system}]
    for facts, question, answer in FEW_SHOT:
        messages.append({"role": "user", "content": user_turn(facts, question)})
        messages.append({"role": "assistant", "content": answer})
    known = [told_you(str(m["content"])) for m in context]
    messages.append({"role": "user", "content": user_turn(known, query)})
    return messages


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
