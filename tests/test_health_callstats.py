"""CallStats: only a component's own failures count against it; no borrowed memory figure."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from typing import Any

import pytest

from coda_lite.errors import InputError, malformed_text
from coda_lite.llm import EchoLLM
from coda_lite.memory.embedder import HashingEmbedder
from coda_lite.speech.audio import AudioError
from coda_lite.speech.tts import EspeakTTS
from coda_lite.stats import CallStats
from tests.support import require_tool

LONE_SURROGATE = "hello \ud800 there"  # what a JSON body's "\ud800" escape decodes to


def fail(stats: CallStats, exc: Exception, *inputs: object) -> None:
    with pytest.raises(type(exc)), stats.track(*inputs):
        raise exc


def test_heartbeat_does_not_report_the_process_memory_as_its_own() -> None:
    stats = CallStats()
    assert "memory_usage" not in stats.heartbeat(healthy=True, models_loaded=True)
    own = stats.heartbeat(healthy=True, models_loaded=True, memory_usage=1234)
    assert own["memory_usage"] == 1234  # a component that knows its own figure still can


def test_caller_errors_do_not_count_and_own_failures_do() -> None:
    stats = CallStats()
    fail(stats, InputError("empty text"))
    fail(stats, AudioError("silent audio"))
    fail(stats, UnicodeEncodeError("utf-8", LONE_SURROGATE, 6, 7, "x"), LONE_SURROGATE)
    fail(stats, AttributeError("'NoneType' object has no attribute 'strip'"), None)
    fail(stats, TypeError("expected str"), ["fine", 3])
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert (beat["error_rate"], beat["errors"], beat["input_errors"]) == (0.0, 0, 5)
    assert beat["last_error"] is None and beat["calls"] == 5

    # the same exception types with well-formed input are the component's own failure
    fail(stats, ValueError("shape mismatch"), "well formed text")
    fail(stats, TypeError("bad internal call"))
    fail(stats, RuntimeError("model crashed"), LONE_SURROGATE)  # not an input-shaped error
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert (beat["errors"], beat["input_errors"], beat["error_rate"]) == (3, 5, 1.0)
    assert beat["last_error"] == "RuntimeError: model crashed"

    with stats.track("ok"):
        pass
    assert stats.error_rate == 0.75


def test_malformed_text_says_why() -> None:
    assert malformed_text("fine") is None
    assert malformed_text(["a", ("b", "c")]) is None
    assert "not valid Unicode" in (malformed_text(LONE_SURROGATE) or "")
    assert "NoneType" in (malformed_text(None) or "")
    assert "int" in (malformed_text(["a", 3]) or "")


async def test_bad_text_does_not_make_real_stages_unhealthy() -> None:
    llm, embedder = EchoLLM(), HashingEmbedder()
    stages: list[Any] = [llm, embedder]
    for _ in range(3):
        with pytest.raises(AttributeError):
            await llm.generate(None, [])  # type: ignore[arg-type]
        with pytest.raises(AttributeError):
            embedder.encode([None])  # type: ignore[list-item]
    require_tool("espeak-ng")
    tts = EspeakTTS()
    stages.append(tts)
    for _ in range(3):
        with pytest.raises(UnicodeEncodeError):
            await tts.synthesize(LONE_SURROGATE)
    for stage in stages:
        beat = await stage.get_heartbeat()
        assert beat["healthy"] and beat["error_rate"] == 0.0 and beat["errors"] == 0, stage.name
        assert beat["input_errors"] == 3 and "memory_usage" not in beat, stage.name


@pytest.mark.parametrize(
    "exc",
    [
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.OperationalError("disk I/O error"),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EFBIG, "File too large"),
        MemoryError(),
    ],
    ids=["sqlite-full", "sqlite-io", "enospc", "efbig", "memory"],
)
def test_a_full_disk_is_a_resource_cause_not_the_components_failure(exc: Exception) -> None:
    stats = CallStats()
    with stats.track("ok"):
        pass
    fail(stats, exc, "a memory to save")
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert (beat["healthy"], beat["cause"], beat["resource_errors"]) == (False, "resource", 1)
    assert "no restart frees it" in beat["last_error"] and type(exc).__name__ in beat["last_error"]
    assert beat["error_rate"] == 0.0 and beat["errors"] == 0  # not counted against it

    with stats.track("space again"):  # a real call works: the evidence is gone
        pass
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert beat["healthy"] is True and "cause" not in beat


def test_only_a_write_that_works_clears_a_full_disk() -> None:
    stats = CallStats()
    with pytest.raises(OSError), stats.track("a fact", kind="write"):
        raise OSError(errno.ENOSPC, "No space left on device")
    with stats.track("a question"):  # reads still work on a full disk: it is still full
        pass
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert (beat["healthy"], beat["cause"]) == (False, "resource"), beat
    with stats.track("a fact", kind="write"):
        pass
    assert "cause" not in stats.heartbeat(healthy=True, models_loaded=True)


def test_a_timeout_behind_other_calls_is_overload_and_alone_a_fault() -> None:
    stats = CallStats()
    with pytest.raises(asyncio.CancelledError), stats.track("alone"):
        raise asyncio.CancelledError  # cut at its stage deadline (cancelled, then recorded)
    stats.record_timeout("llm stage deadline passed")
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert (beat["healthy"], beat["cause"], beat["inflight"]) == (False, "fault", 0)
    with stats.track("works"):  # a real call works: the evidence is gone
        pass
    assert stats.heartbeat(healthy=True, models_loaded=True)["healthy"] is True

    # two calls side by side (one queued behind the other), both cut at their deadline
    with pytest.raises(asyncio.CancelledError), stats.track("a"), stats.track("b"):
        raise asyncio.CancelledError
    stats.record_timeout("llm stage deadline passed")
    beat = stats.heartbeat(healthy=True, models_loaded=True)
    assert (beat["healthy"], beat["cause"], beat["inflight"]) == (False, "overload", 0)
    assert "queued behind other calls" in beat["last_error"]
