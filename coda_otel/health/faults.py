"""Fault injection for demos and tests: make a watched component crash, hang, sicken or leak.

    from coda_otel.health.faults import FaultInjector

    injector = FaultInjector()
    components = injector.wrap_all([stt, embedder, llm, tts])  # hand these to the watchdog
    injector.inject("llm", "hang")        # heartbeat never answers until the llm is restarted
    injector.is_crashed("llm")            # the pipeline asks this to fail a crashed stage
    llm = injector.guard("llm", llm, ["generate"])  # or let a guard act on the real calls

Faults (each lasts until the component's ``restart`` or ``force_restart``, or :meth:`clear`),
felt by the heartbeat and by the guarded calls of the turn path, as the real failure would be:

* ``crash``: the heartbeat raises and :meth:`FaultInjector.is_crashed` is True; guarded
  calls raise :class:`InjectedFault`;
* ``hang``: the heartbeat never answers, nor do guarded calls (async ones wait on the loop,
  sync ones block their thread) until the fault ends;
* ``unhealthy``: the heartbeat reports ``healthy: False``;
* ``leak``: each heartbeat holds another chunk of real memory (``bytearray``, capped) and
  reports it in ``memory_usage``.

An unknown component or fault raises :class:`ValueError` naming the valid ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from coda_otel.protocols import Component

FAULTS: tuple[str, ...] = ("crash", "hang", "unhealthy", "leak")
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

    def __init__(self, *, leak_chunk_bytes: int = MIB, leak_cap_bytes: int = 64 * MIB) -> None:
        if leak_chunk_bytes <= 0 or leak_cap_bytes < leak_chunk_bytes:
            raise ValueError("need 0 < leak_chunk_bytes <= leak_cap_bytes")
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

    def active(self, component_name: str) -> str | None:
        """The fault currently injected into the component, if any."""
        fault = self._faults.get(component_name)
        return fault.kind if fault else None

    def is_crashed(self, component_name: str) -> bool:
        """True while a ``crash`` is injected (the pipeline should fail this stage)."""
        return self.active(component_name) == "crash"

    def guard(self, component_name: str, target: Any, methods: Iterable[str]) -> Any:
        """A proxy of ``target`` whose ``methods`` raise :class:`InjectedFault` while the
        component is crashed, so the pipeline fails that stage as a real crash would.

        Sync and async methods are both guarded; every other attribute passes through.
        """
        return _Guarded(target, component_name, frozenset(methods), self)

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
        heartbeat = dict(await inner.get_heartbeat())
        heartbeat["fault"] = fault.kind
        if fault.kind == "unhealthy":
            heartbeat["healthy"] = False
        else:  # leak
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


class _Guarded:
    """Delegates to ``target``; guarded methods check the injector before each call."""

    def __init__(
        self, target: Any, name: str, methods: frozenset[str], injector: FaultInjector
    ) -> None:
        self._target = target
        self._name = name
        self._methods = methods
        self._injector = injector

    def _crash(self) -> None:
        if self._injector.is_crashed(self._name):
            raise InjectedFault(f"{self._name}: injected crash (until the watchdog restarts it)")

    async def _check_async(self) -> None:
        fault = self._injector._faults.get(self._name)
        if fault is not None and fault.kind == "hang":
            await fault.release.wait()  # a hung backend: the call answers when restarted
        self._crash()

    def _check(self) -> None:
        fault = self._injector._faults.get(self._name)
        if fault is not None and fault.kind == "hang":
            fault.released.wait()  # blocks this worker thread, as a hung backend call does
        self._crash()

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # not set yet (copy, pickle), or private: no recursion
            raise AttributeError(attr)
        value = getattr(self._target, attr)
        if attr not in self._methods:
            return value
        if asyncio.iscoroutinefunction(value):

            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                await self._check_async()
                return await value(*args, **kwargs)

            return guarded_async

        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return value(*args, **kwargs)

        return guarded

    def __repr__(self) -> str:
        return f"<guarded {self._target!r}>"
