"""FaultInjector.guard: every call shape feels crash, hang and slow, never blocking the loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from coda_otel.health.faults import FaultInjector, InjectedFault
from coda_otel.testing import eventually


class Speaker:
    name = "tts"
    voice = "en-us"

    def __init__(self) -> None:
        self.restarts = 0
        self.started: list[str] = []

    async def get_heartbeat(self) -> dict[str, Any]:
        return {"healthy": True}

    async def restart(self) -> None:
        self.restarts += 1

    async def force_restart(self) -> None:
        self.restarts += 1

    async def synthesize(self, text: str) -> bytes:
        self.started.append("synthesize")
        return text.encode()

    def encode(self, text: str) -> int:
        self.started.append("encode")
        return len(text)

    async def stream(self, text: str) -> AsyncIterator[str]:
        self.started.append("stream")
        for word in text.split():
            yield word

    def words(self, text: str) -> Iterator[str]:
        self.started.append("words")
        yield from text.split()


METHODS = ["synthesize", "encode", "stream", "words"]


def setup() -> tuple[FaultInjector, Any, Any, Speaker]:
    injector = FaultInjector(slow_seconds=0.3)
    speaker = Speaker()
    (component,) = injector.wrap_all([speaker])
    return injector, component, injector.guard("tts", speaker, METHODS), speaker


async def collect(items: AsyncIterator[str]) -> list[str]:
    return [item async for item in items]


class Ticker:
    """Another task on the loop: it keeps counting only while the loop is free."""

    def __init__(self) -> None:
        self.ticks = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.01)

    async def keeps_ticking(self, more: int = 10) -> None:
        start = self.ticks
        await eventually(lambda: self.ticks >= start + more, 5, what="the loop to keep ticking")

    def stop(self) -> None:
        self.task.cancel()


async def test_every_shape_works_and_crashes_while_crashed() -> None:
    injector, component, guarded, speaker = setup()
    assert await guarded.synthesize("hi") == b"hi"
    assert guarded.encode("abc") == 3
    assert await collect(guarded.stream("a b")) == ["a", "b"]
    assert list(guarded.words("c d")) == ["c", "d"]
    assert guarded.voice == "en-us"  # unguarded attributes pass through

    injector.inject("tts", "crash")
    speaker.started.clear()
    with pytest.raises(InjectedFault, match="tts: injected crash"):
        await guarded.synthesize("hi")
    with pytest.raises(InjectedFault):
        guarded.encode("abc")
    items = guarded.stream("a b")  # a generator raises at its first item, as a real one would
    with pytest.raises(InjectedFault):
        await items.__anext__()
    words = guarded.words("a b")
    with pytest.raises(InjectedFault):
        next(words)
    assert speaker.started == []  # the real method never ran

    await component.restart()  # what the watchdog does
    assert speaker.restarts == 1
    assert await guarded.synthesize("back") == b"back"
    assert await collect(guarded.stream("x y")) == ["x", "y"]


async def test_heartbeat_only_faults_do_not_fail_calls() -> None:
    injector, _, guarded, _ = setup()
    for fault in ("unhealthy", "leak"):
        injector.inject("tts", fault)
        assert await guarded.synthesize("ok") == b"ok"
        assert await collect(guarded.stream("o k")) == ["o", "k"]
    injector.clear("tts")


@pytest.mark.parametrize("shape", ["coroutine", "async generator"])
async def test_an_async_hang_awaits_keeps_the_loop_running_and_is_cancellable(shape: str) -> None:
    injector, component, guarded, speaker = setup()
    injector.inject("tts", "hang")
    ticker = Ticker()
    try:

        async def call() -> Any:
            if shape == "coroutine":
                return await guarded.synthesize("late")
            return await collect(guarded.stream("la te"))

        hung = asyncio.ensure_future(call())
        await ticker.keeps_ticking()  # the loop runs other tasks while the call hangs
        assert not hung.done() and speaker.started == []
        hung.cancel()  # a stage deadline or a client leaving ends it
        with pytest.raises(asyncio.CancelledError):
            await hung

        answered = asyncio.ensure_future(call())
        await ticker.keeps_ticking()
        assert not answered.done()
        await component.restart()  # a hung backend answers once restarted
        assert await asyncio.wait_for(answered, 5) in (b"late", ["la", "te"])
    finally:
        ticker.stop()


@pytest.mark.parametrize("shape", ["function", "generator"])
async def test_a_sync_hang_blocks_only_its_worker_thread(shape: str) -> None:
    injector, component, guarded, _ = setup()
    injector.inject("tts", "hang")
    ticker = Ticker()
    entered = threading.Event()

    def call() -> Any:
        entered.set()
        return guarded.encode("abcd") if shape == "function" else list(guarded.words("a b"))

    try:
        blocked = asyncio.ensure_future(asyncio.to_thread(call))
        await asyncio.to_thread(entered.wait, 5)
        await ticker.keeps_ticking()  # the thread is stuck, the loop is not
        assert not blocked.done()
        await component.restart()
        assert await asyncio.wait_for(blocked, 5) in (4, ["a", "b"])
    finally:
        ticker.stop()


async def test_a_sync_call_on_the_loop_thread_fails_rather_than_freeze_the_loop() -> None:
    injector, _, guarded, speaker = setup()
    injector.inject("tts", "hang")
    with pytest.raises(InjectedFault, match="event loop thread"):
        guarded.encode("abc")
    with pytest.raises(InjectedFault, match="event loop thread"):
        next(guarded.words("a b"))
    assert speaker.started == []


async def test_slow_delays_every_shape_without_blocking_the_loop() -> None:
    injector, component, guarded, _ = setup()
    injector.inject("tts", "slow")
    loop = asyncio.get_running_loop()
    ticker = Ticker()
    try:
        t0 = loop.time()
        results = await asyncio.gather(
            guarded.synthesize("s"),
            collect(guarded.stream("s t")),
            asyncio.to_thread(guarded.encode, "abc"),
            component.get_heartbeat(),
        )
        took = loop.time() - t0
        assert results[:3] == [b"s", ["s", "t"], 3]
        assert results[3]["fault"] == "slow" and results[3]["healthy"] is True
        assert took >= 0.3  # each waited slow_seconds, side by side
        assert ticker.ticks >= 5  # and the loop kept running meanwhile
    finally:
        ticker.stop()
    with pytest.raises(ValueError, match="slow_seconds"):
        FaultInjector(slow_seconds=0)
