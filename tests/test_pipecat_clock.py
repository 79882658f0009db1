"""The Pipecat turn clock: a latency breakdown that always adds up, whatever the frame order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import IN_CI

if not IN_CI:
    pytest.importorskip(
        "pipecat", reason="pipecat-ai is not installed (pip install 'coda-lite[pipecat]')"
    )

from coda_otel.integrations.pipecat.clock import TurnClock

MARKS = ("speech_end", "transcript", "llm_start", "first_token", "tts_start", "first_audio")


def test_a_spoken_turn_in_order() -> None:
    clock = TurnClock()
    for name, ms in zip(MARKS, (1000, 1300, 1310, 1500, 1900, 2000), strict=True):
        clock.mark(name, ms * 1_000_000)
    clock.mark("last_token", 2_500_000_000)
    latency = clock.measure(output_tokens=11)
    assert latency is not None
    assert latency["breakdown_us"] == {
        "recognition": 300_000,
        "handoffs": 10_000,
        "llm_first_sentence": 590_000,
        "tts_first_sentence": 100_000,
    }
    assert latency["voice_to_voice_us"] == 1_000_000
    assert latency["time_to_first_token_us"] == 190_000
    assert latency["time_to_first_audio_us"] == 690_000
    assert latency["output_tokens_per_second"] == 10.0  # 10 tokens after the first, in 1 s


def test_a_transcript_before_the_speech_ended_costs_no_recognition_time() -> None:
    clock = TurnClock()
    clock.mark("transcript", 900_000)
    for name, us in (("speech_end", 1000), ("llm_start", 1200), ("tts_start", 1500)):
        clock.mark(name, us * 1000)
    clock.mark_once("first_audio", 1_700_000)
    clock.mark_once("first_audio", 9_000_000)  # only the first audio counts
    latency = clock.measure()
    assert latency is not None
    assert latency["breakdown_us"]["recognition"] == 0
    assert latency["voice_to_voice_us"] == 700 == sum(latency["breakdown_us"].values())


def test_no_audio_or_no_model_call_means_no_measure() -> None:
    clock = TurnClock()
    clock.mark("transcript", 1)
    clock.mark("llm_start", 2)
    assert clock.measure() is None  # nothing was spoken
    clock.mark("first_audio", 3)
    assert clock.measure() is not None


@given(st.lists(st.integers(0, 10**12), min_size=len(MARKS), max_size=len(MARKS)))
def test_the_breakdown_always_adds_up(instants: list[int]) -> None:
    clock = TurnClock()
    for name, ns in zip(MARKS, instants, strict=True):
        clock.mark(name, ns)
    latency = clock.measure()
    assert latency is not None
    parts = latency["breakdown_us"]
    assert all(v >= 0 for v in parts.values())
    assert latency["voice_to_voice_us"] == sum(parts.values())
