"""Admission control on its own: bounded running turns, a bounded first-come queue, refusals
that say why, and slots that are never lost to cancellation."""

from __future__ import annotations

import asyncio

import pytest

from coda_lite.pipeline.admission import Admission, Overloaded
from coda_otel.testing import eventually


async def hold(admission: Admission, release: asyncio.Event, started: asyncio.Event) -> None:
    async with admission.slot():
        started.set()
        await release.wait()


async def test_a_full_queue_refuses_at_once_and_says_why() -> None:
    shed: list[str] = []
    admission = Admission(1, 1, 30.0, on_shed=shed.append)
    release, first_in = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(hold(admission, release, first_in))
    await first_in.wait()
    second_in = asyncio.Event()
    second = asyncio.create_task(hold(admission, release, second_in))
    await eventually(lambda: admission.depth == 1, what="the second turn to queue")
    assert admission.full
    with pytest.raises(Overloaded) as refused:
        async with admission.slot():
            raise AssertionError("a third turn must not start")
    assert refused.value.reason == "queue_full" and refused.value.retry_after_s >= 1
    assert "busy" in str(refused.value) and shed == ["queue_full"]
    release.set()
    await asyncio.gather(first, second)
    assert second_in.is_set() and admission.running == 0 and admission.depth == 0


async def test_a_turn_that_waits_too_long_is_refused_and_leaves_the_queue() -> None:
    shed: list[str] = []
    admission = Admission(1, 4, 0.05, on_shed=shed.append)
    release, started = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(admission, release, started))
    await started.wait()
    with pytest.raises(Overloaded) as refused:
        async with admission.slot():
            pass
    assert refused.value.reason == "queue_timeout" and shed == ["queue_timeout"]
    assert admission.depth == 0
    release.set()
    await holder


async def test_waiters_start_first_come_first_served_and_report_their_wait() -> None:
    waits: list[float] = []
    admission = Admission(1, 8, 30.0, on_wait=waits.append)
    order: list[int] = []
    gate = asyncio.Event()

    async def turn(i: int) -> None:
        async with admission.slot():
            order.append(i)
            await gate.wait()

    tasks = [asyncio.create_task(turn(i)) for i in range(4)]
    await eventually(lambda: admission.depth == 3, what="three turns to queue")
    gate.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3] and len(waits) == 4 and waits[0] == 0.0


async def test_a_cancelled_waiter_never_takes_a_slot_with_it() -> None:
    admission = Admission(1, 4, 30.0)
    release, started = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(admission, release, started))
    await started.wait()
    waiter = asyncio.create_task(hold(admission, asyncio.Event(), asyncio.Event()))
    await eventually(lambda: admission.depth == 1, what="the waiter to queue")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder
    assert admission.running == 0 and admission.depth == 0
    async with admission.slot():  # the slot is free again
        assert admission.running == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="running >= 1"):
        Admission(0, 1, 1.0)
