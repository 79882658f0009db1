"""Fault injection for demos and tests: make a watched component crash, hang, slow, sicken or leak.

    from coda_otel.health.faults import FaultInjector

    injector = FaultInjector()
    components = injector.wrap_all([stt, embedder, llm, tts])  # hand these to the watchdog
    injector.inject("llm", "hang")        # heartbeat never answers until the llm is restarted
    injector.is_crashed("llm")            # the pipeline asks this to fail a crashed stage
    llm = injector.guard("llm", llm, ["generate", "stream"])  # the real calls feel it too

Faults (each lasts until the component's ``restart`` or ``force_restart``, or :meth:`clear`),
felt by the heartbeat and by the guarded calls of the turn path, as the real failure would be:

* ``crash``: the heartbeat raises and :meth:`FaultInjector.is_crashed` is True; guarded
  calls raise :class:`InjectedFault` when called (a generator: at its first item);
* ``hang``: the heartbeat never answers, nor do guarded calls, until the fault ends;
* ``slow``: the heartbeat and guarded calls answer ``slow_seconds`` late;
* ``unhealthy``: the heartbeat reports ``healthy: False``;
* ``leak``: each heartbeat holds another chunk of real memory (``bytearray``, capped) and
  reports it in ``memory_usage``.

A guarded call never blocks the event loop, whatever its shape: a coroutine function or an
async generator function (``stream``) hangs or is slow by awaiting (so it stays cancellable:
a stage deadline or a client leaving ends it); a sync function or sync generator run in a
worker thread (``asyncio.to_thread``) blocks only that thread, until the fault ends. A sync
call made on the event loop's own thread cannot wait without freezing the loop, so under
``hang`` it raises :class:`InjectedFault` at once and under ``slow`` it is not delayed.

An unknown component or fault raises :class:`ValueError` naming the valid ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coda_otel.protocols import Component

FAULTS: tuple[str, ...] = ("crash", "hang", "slow", "unhealthy", "leak")
MIB = 1024 * 1024


class InjectedFault(RuntimeError):
    """What a crashed component's heartbeat raises."""


@dataclass
class _Fault:
    kind: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    released: threading.Event = field(default_factory=threading.Event)  # for threads
    held: list[bytearray] = field(default_factory=list)

    @property
    def held_bytes(self) -> int:
        return sum(len(chunk) for chunk in self.held)


class FaultInjector:
    """Wraps components so that faults can be injected into them by name."""

    def __init__(
        self,
        *,
        leak_chunk_bytes: int = MIB,
        leak_cap_bytes: int = 64 * MIB,
        slow_seconds: float = 2.0,
    ) -> None:
        if leak_chunk_bytes <= 0 or leak_cap_bytes < leak_chunk_bytes:
            raise ValueError("need 0 < leak_chunk_bytes <= leak_cap_bytes")
        if not slow_seconds > 0:
            raise ValueError(f"slow_seconds must be positive, got {slow_seconds}")
        self.slow_seconds = slow_seconds
        self.leak_chunk_bytes = leak_chunk_bytes
        self.leak_cap_bytes = leak_cap_bytes
        self._wrapped: dict[str, Component] = {}
        self._faults: dict[str, _Fault] = {}

    def wrap(self, component: Component) -> Component:
        """A component that behaves like ``component`` until a fault is injected into it."""
        if not isinstance(component, Component):
            raise TypeError(f"{component!r} lacks name/get_heartbeat/restart/force_restart")
        if component.name in self._wrapped:
            raise ValueError(f"a component named {component.name!r} is already wrapped")
        wrapped = _FaultyComponent(component, self)
        self._wrapped[component.name] = wrapped
        return wrapped

    def wrap_all(self, components: Iterable[Component]) -> list[Component]:
        return [self.wrap(c) for c in components]

    def inject(self, component_name: str, fault: str) -> None:
        """Start ``fault`` (one of :data:`FAULTS`) in the named component, replacing any other."""
        if component_name not in self._wrapped:
            known = ", ".join(sorted(self._wrapped)) or "none"
            raise ValueError(f"unknown component {component_name!r} (known: {known})")
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (use one of: {', '.join(FAULTS)})")
        self.clear(component_name)
        self._faults[component_name] = _Fault(fault)

    def clear(self, component_name: str) -> None:
        """End any fault in the component (a hung heartbeat returns, leaked memory is freed)."""
        fault = self._faults.pop(component_name, None)
        if fault is not None:
            fault.release.set()
            fault.released.set()
            fault.held.clear()

    def clear_all(self) -> None:
        """End every fault (a server shutting down releases the calls its faults hold)."""
        for name in list(self._faults):
            self.clear(name)

    def active(self, component_name: str) -> str | None:
        """The fault currently injected into the component, if any."""
        fault = self._faults.get(component_name)
        return fault.kind if fault else None

    def is_crashed(self, component_name: str) -> bool:
        """True while a ``crash`` is injected (the pipeline should fail this stage)."""
        return self.active(component_name) == "crash"

    def guard(self, component_name: str, target: Any, methods: Iterable[str]) -> Any:
        """A proxy of ``target`` whose ``methods`` feel the component's ``crash``, ``hang`` and
        ``slow`` faults, so the pipeline's stage fails, hangs or lags as with the real fault.

        Each method keeps its shape (sync function, coroutine function, sync or async
        generator function) and never blocks the event loop (see the module docstring);
        every other attribute passes through.
        """
        return _Guarded(target, frozenset(methods), _Gate(self, component_name))

    def held_bytes(self, component_name: str) -> int:
        """Memory the ``leak`` fault currently holds for the component."""
        fault = self._faults.get(component_name)
        return fault.held_bytes if fault else 0

    async def _heartbeat(self, inner: Component) -> Mapping[str, Any]:
        fault = self._faults.get(inner.name)
        if fault is None:
            return await inner.get_heartbeat()
        if fault.kind == "crash":
            raise InjectedFault(f"{inner.name}: injected crash")
        if fault.kind == "hang":
            await fault.release.wait()
            raise InjectedFault(f"{inner.name}: hang ended by restart")
        if fault.kind == "slow":
            await _wait_released(fault, self.slow_seconds)
        heartbeat = dict(await inner.get_heartbeat())
        heartbeat["fault"] = fault.kind
        if fault.kind == "unhealthy":
            heartbeat["healthy"] = False
        elif fault.kind == "leak":
            if fault.held_bytes + self.leak_chunk_bytes <= self.leak_cap_bytes:
                chunk = bytearray(self.leak_chunk_bytes)
                chunk[::4096] = b"\x01" * len(range(0, len(chunk), 4096))  # touch every page
                fault.held.append(chunk)
            base = heartbeat.get("memory_usage", 0)
            base = base if isinstance(base, int) and not isinstance(base, bool) else 0
            heartbeat["memory_usage"] = base + fault.held_bytes
        return heartbeat


class _FaultyComponent:
    """Delegates to the wrapped component; the injector decides what its heartbeat does."""

    def __init__(self, inner: Component, injector: FaultInjector) -> None:
        self.name = inner.name
        self.inner = inner
        self._injector = injector

    async def get_heartbeat(self) -> Mapping[str, Any]:
        return await self._injector._heartbeat(self.inner)

    async def restart(self) -> None:
        self._injector.clear(self.name)
        await self.inner.restart()

    async def force_restart(self) -> None:
        self._injector.clear(self.name)
        await self.inner.force_restart()

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner":  # not set yet (copy, pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"<faulty {self.inner!r}>"


async def _wait_released(fault: _Fault, seconds: float | None) -> None:
    """Await the fault's end, at most ``seconds`` (None: however long); cancellable."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(fault.release.wait(), seconds)


def _on_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Gate:
    """What a guarded call of one component meets before it runs: its current fault."""

    def __init__(self, injector: FaultInjector, name: str) -> None:
        self.injector = injector
        self.name = name

    def _crash(self) -> None:
        if self.injector.is_crashed(self.name):
            raise InjectedFault(f"{self.name}: injected crash (until the watchdog restarts it)")

    def _fault(self) -> _Fault | None:
        return self.injector._faults.get(self.name)

    async def enter_async(self) -> None:
        """Hang (until the fault ends) or lag by awaiting: the loop keeps running."""
        fault = self._fault()
        if fault is not None and fault.kind in ("hang", "slow"):
            slow = fault.kind == "slow"
            await _wait_released(fault, self.injector.slow_seconds if slow else None)
        self._crash()  # a hung backend answers once restarted, unless it crashed since

    def enter_sync(self) -> None:
        """Hang or lag by blocking the calling worker thread, never the loop's own."""
        fault = self._fault()
        if fault is not None and fault.kind in ("hang", "slow"):
            if _on_loop_thread():  # waiting here would freeze every task of the server
                if fault.kind == "hang":
                    raise InjectedFault(
                        f"{self.name}: injected hang (a sync call on the event loop thread "
                        "fails at once rather than freeze the loop)"
                    )
            elif fault.kind == "slow":
                fault.released.wait(self.injector.slow_seconds)
            else:
                _block_until_released(fault, self.name)
        self._crash()


def _block_until_released(fault: _Fault, name: str) -> None:
    """Block this worker thread until the fault ends, or the interpreter exits (a worker
    thread is joined at exit: one hung for ever would keep a stopped server alive)."""
    while not fault.released.wait(0.5):
        if not threading.main_thread().is_alive():
            raise InjectedFault(f"{name}: hang ended by the process exiting")


def _guarded(gate: _Gate, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the same call shape, meeting ``gate`` first (at the first item for
    generators, as a real generator only runs when iterated)."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def agen(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            await gate.enter_async()
            async with contextlib.aclosing(fn(*args, **kwargs)) as items:
                async for item in items:
                    yield item

        return agen
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coro(*args: Any, **kwargs: Any) -> Any:
            await gate.enter_async()
            return await fn(*args, **kwargs)

        return coro
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            gate.enter_sync()
            return (yield from fn(*args, **kwargs))

        return gen

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        gate.enter_sync()
        return fn(*args, **kwargs)

    return call


class _Guarded:
    """Delegates to ``target``; guarded methods meet the component's fault before each call."""

    def __init__(self, target: Any, methods: frozenset[str], gate: _Gate) -> None:
        self._target = target
        self._methods = methods
        self._gate = gate

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # not set yet (copy, pickle), or private: no recursion
            raise AttributeError(attr)
        value = getattr(self._target, attr)
        if attr not in self._methods or not callable(value):
            return value
        return _guarded(self._gate, value)

    def __repr__(self) -> str:
        return f"<guarded {self._target!r}>"
