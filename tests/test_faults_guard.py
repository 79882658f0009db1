"""FaultInjector.guard: a crashed component fails its stage calls too, until restarted."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coda_otel.health.faults import FaultInjector, InjectedFault


class Speaker:
    name = "tts"
    voice = "en-us"

    def __init__(self) -> None:
        self.restarts = 0

    async def get_heartbeat(self) -> dict[str, Any]:
        return {"healthy": True}

    async def restart(self) -> None:
        self.restarts += 1

    async def force_restart(self) -> None:
        self.restarts += 1

    async def synthesize(self, text: str) -> bytes:
        return text.encode()

    def encode(self, text: str) -> int:
        return len(text)


async def test_guarded_calls_fail_while_crashed_and_work_after_restart() -> None:
    injector = FaultInjector()
    speaker = Speaker()
    (component,) = injector.wrap_all([speaker])
    guarded = injector.guard("tts", speaker, ["synthesize", "encode"])
    assert await guarded.synthesize("hi") == b"hi"
    assert guarded.encode("abc") == 3
    assert guarded.voice == "en-us"  # unguarded attributes pass through

    injector.inject("tts", "crash")
    with pytest.raises(InjectedFault, match="tts: injected crash"):
        await guarded.synthesize("hi")
    with pytest.raises(InjectedFault):
        guarded.encode("abc")

    await component.restart()  # what the watchdog does
    assert speaker.restarts == 1
    assert await guarded.synthesize("back") == b"back"


async def test_heartbeat_only_faults_do_not_fail_calls() -> None:
    injector = FaultInjector()
    speaker = Speaker()
    injector.wrap_all([speaker])
    guarded = injector.guard("tts", speaker, ["synthesize"])
    for fault in ("unhealthy", "leak"):
        injector.inject("tts", fault)
        assert await guarded.synthesize("ok") == b"ok"
    injector.clear("tts")


async def test_a_hang_holds_calls_until_the_component_is_restarted() -> None:
    injector = FaultInjector()
    speaker = Speaker()
    (component,) = injector.wrap_all([speaker])
    guarded = injector.guard("tts", speaker, ["synthesize", "encode"])
    injector.inject("tts", "hang")
    call = asyncio.ensure_future(guarded.synthesize("late"))
    blocked = asyncio.ensure_future(asyncio.to_thread(guarded.encode, "abcd"))
    await asyncio.sleep(0.2)
    assert not call.done() and not blocked.done()  # async and threaded calls both hang
    await component.restart()
    assert await asyncio.wait_for(call, 5) == b"late"
    assert await asyncio.wait_for(blocked, 5) == 4
