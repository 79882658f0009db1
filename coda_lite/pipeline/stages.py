"""The shapes of Coda Lite's stages, defined once: what the manager calls and the factory builds.

    class MySTT:                                   # structural typing: no base class
        name = "stt"
        async def transcribe(self, audio: bytes | str | os.PathLike[str]) -> str: ...

    manager = ConversationManager(stt=MySTT(), memory=memory, llm=llm, tts=tts)

A backend may offer more (an LLM's ``stream``, a component's heartbeat); these are what the
pipeline relies on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from coda_lite.llm.types import LLMResult

__all__ = ["LLM", "STT", "TTS", "Component", "Embedder", "Memory"]


class STT(Protocol):
    """Speech to text: WAV bytes or a file path in, the transcript out."""

    async def transcribe(self, audio: bytes | str | os.PathLike[str]) -> str: ...


class Memory(Protocol):
    """What a turn reads before the answer and writes after it, for one owner."""

    async def get_context(self, query: str, *, owner: str) -> list[dict[str, Any]]: ...

    async def add_interaction(self, user: str, assistant: str, *, owner: str) -> Any: ...


class LLM(Protocol):
    """The model: the query and retrieved memories in, the answer out (``stream`` optional)."""

    async def generate(self, query: str, context: Sequence[Mapping[str, Any]]) -> LLMResult: ...


class TTS(Protocol):
    """Text to speech: one sentence or answer in, WAV bytes out."""

    async def synthesize(self, text: str) -> bytes: ...


class Embedder(Protocol):
    """Texts in, one row of floats per text out (``dim`` columns)."""

    model_name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class Component(Protocol):
    """A stage as the watchdog sees it: a name, a heartbeat, and two ways to restart."""

    name: str

    async def get_heartbeat(self) -> Mapping[str, Any]: ...

    async def restart(self) -> None: ...

    async def force_restart(self) -> None: ...
