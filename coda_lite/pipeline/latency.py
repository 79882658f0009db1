"""A turn's clock and the latency measures taken from it, with a breakdown that adds up.

    clock = TurnClock()                 # the user stopped speaking: the turn starts now
    clock.mark("stt_start"); ...; clock.mark("first_audio")
    latency = measure(clock, output_tokens=42)
    latency.voice_to_voice_us == sum(latency.breakdown_us.values())   # always, exactly

Every mark is an integer count of microseconds of one monotonic clock, and every part of the
breakdown is a difference of two marks; the parts are consecutive intervals from the turn's
start to its first audio, so their sum telescopes to the total to the microsecond. The gaps
between the stages (scheduling, observation, queueing) are one named part, ``handoffs``:

    recognition          stt_start -> stt_end
    retrieval            retrieval_start -> retrieval_end
    llm_first_sentence   llm_start -> first_sentence   (the model's first complete sentence)
    tts_first_sentence   tts_start -> first_audio      (synthesis of that sentence)
    handoffs             turn_start -> stt_start, stt_end -> retrieval_start,
                         retrieval_end -> llm_start, first_sentence -> tts_start
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

PARTS = ("recognition", "retrieval", "llm_first_sentence", "tts_first_sentence", "handoffs")
_SPANS = {
    "recognition": ("stt_start", "stt_end"),
    "retrieval": ("retrieval_start", "retrieval_end"),
    "llm_first_sentence": ("llm_start", "first_sentence"),
    "tts_first_sentence": ("tts_start", "first_audio"),
}
_GAPS = (
    ("turn_start", "stt_start"),
    ("stt_end", "retrieval_start"),
    ("retrieval_end", "llm_start"),
    ("first_sentence", "tts_start"),
)


def now_us() -> int:
    """Microseconds of the monotonic performance clock."""
    return time.perf_counter_ns() // 1000


class TurnClock:
    """Named instants of one turn; ``turn_start`` is taken at creation."""

    def __init__(self) -> None:
        self.marks: dict[str, int] = {"turn_start": now_us()}

    def mark(self, name: str) -> int:
        self.marks[name] = at = now_us()
        return at

    def mark_once(self, name: str) -> None:
        """Keep the first instant of ``name`` (first token, first sentence, first audio)."""
        if name not in self.marks:
            self.marks[name] = now_us()


@dataclass(frozen=True)
class TurnLatency:
    """The measures of one turn (durations in integer microseconds)."""

    voice_to_voice_us: int  # the user stopped speaking -> the assistant's first audio
    time_to_first_audio_us: int  # the model was asked -> the first audio
    time_to_first_token_us: int | None  # the model was asked -> its first text
    output_tokens_per_second: float | None  # decoding rate after the first token
    output_tokens: int
    streamed: bool
    breakdown_us: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _between(marks: dict[str, int], a: str, b: str) -> int:
    return marks[b] - marks[a]


def measure(clock: TurnClock, *, output_tokens: int, streamed: bool) -> TurnLatency | None:
    """The turn's measures, or None when it produced no audio (no first-audio mark)."""
    m = clock.marks
    needed = {"turn_start", "first_audio", *(x for pair in _SPANS.values() for x in pair)}
    if not needed <= m.keys():
        return None
    breakdown = {part: _between(m, *_SPANS[part]) for part in PARTS[:-1]}
    breakdown["handoffs"] = sum(_between(m, a, b) for a, b in _GAPS)
    ttft = _between(m, "llm_start", "first_token") if "first_token" in m else None
    rate = None
    if output_tokens > 1 and "last_token" in m and m["last_token"] > m.get("first_token", 0):
        rate = round((output_tokens - 1) / ((m["last_token"] - m["first_token"]) / 1e6), 3)
    return TurnLatency(
        voice_to_voice_us=_between(m, "turn_start", "first_audio"),
        time_to_first_audio_us=_between(m, "llm_start", "first_audio"),
        time_to_first_token_us=ttft,
        output_tokens_per_second=rate,
        output_tokens=output_tokens,
        streamed=streamed,
        breakdown_us=breakdown,
    )
