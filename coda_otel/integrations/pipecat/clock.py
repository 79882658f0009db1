"""A Pipecat turn's instants and the voice latency measured from them, adding up exactly.

Every instant is the pipeline clock's timestamp of a frame (``FramePushed.timestamp``, in
nanoseconds), kept as integer microseconds::

    clock = TurnClock()
    clock.mark("speech_end", data.timestamp)          # UserStoppedSpeakingFrame
    clock.mark("transcript", ...); clock.mark("llm_start", ...)
    clock.mark_once("first_token", ...); clock.mark_once("tts_start", ...)
    clock.mark_once("first_audio", ...)               # the first TTSAudioRawFrame
    latency = clock.measure(output_tokens=12)
    latency["voice_to_voice_us"] == sum(latency["breakdown_us"].values())   # always

The breakdown is a chain of consecutive intervals from the end of the user's speech to the
first answer audio, so its parts telescope to the total to the microsecond:

    recognition          speech_end -> transcript   (the final transcript after speech ended)
    handoffs             transcript -> llm_start    (context aggregation, queueing)
    llm_first_sentence   llm_start  -> tts_start    (until the synthesizer had text to speak)
    tts_first_sentence   tts_start  -> first_audio  (synthesis of that first text)

An instant that came earlier than the one before it in the chain (a streaming recognizer's
transcript before the speech ended) counts from that one: its part is zero, never negative.
A turn without ``speech_end`` (typed text) starts at its transcript. The shape is the one
:meth:`coda_otel.pipeline.scopes.Conversation.set_latency` takes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHAIN", "TurnClock"]

#: (part, the instant that ends it), in order, after the turn's start.
CHAIN: tuple[tuple[str, str], ...] = (
    ("recognition", "transcript"),
    ("handoffs", "llm_start"),
    ("llm_first_sentence", "tts_start"),
    ("tts_first_sentence", "first_audio"),
)


class TurnClock:
    """Named instants of one turn, in microseconds of the pipeline clock."""

    __slots__ = ("marks",)

    def __init__(self) -> None:
        self.marks: dict[str, int] = {}

    def mark(self, name: str, timestamp_ns: int) -> None:
        """Set ``name`` to this frame's time (a later mark replaces an earlier one)."""
        self.marks[name] = timestamp_ns // 1000

    def mark_once(self, name: str, timestamp_ns: int) -> None:
        """Keep the first instant of ``name`` (first token, first audio)."""
        if name not in self.marks:
            self.marks[name] = timestamp_ns // 1000

    def has(self, name: str) -> bool:
        return name in self.marks

    def measure(self, *, output_tokens: int | None = None) -> dict[str, Any] | None:
        """The turn's measures, or None when it produced no audio or had no model call."""
        m = self.marks
        start = m.get("speech_end", m.get("transcript"))
        if start is None or "first_audio" not in m or "llm_start" not in m:
            return None
        breakdown: dict[str, int] = {}
        at = start
        for part, mark in CHAIN:
            reached = max(at, m.get(mark, at))
            breakdown[part] = reached - at
            at = reached
        first_token = m.get("first_token")
        rate = None
        last = m.get("last_token")
        spread = (last - first_token) if first_token is not None and last is not None else 0
        if output_tokens and output_tokens > 1 and spread > 0:
            rate = round((output_tokens - 1) / (spread / 1e6), 3)
        return {
            "voice_to_voice_us": at - start,
            "time_to_first_audio_us": m["first_audio"] - m["llm_start"],
            "time_to_first_token_us": None if first_token is None else first_token - m["llm_start"],
            "output_tokens_per_second": rate,
            "output_tokens": output_tokens or 0,
            "streamed": True,
            "breakdown_us": breakdown,
        }
