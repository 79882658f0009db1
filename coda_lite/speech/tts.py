"""Text to speech: espeak-ng in a subprocess (no shell), or ``none``.

    from coda_lite.config import TtsConfig
    from coda_lite.speech.tts import make_tts

    tts = make_tts(TtsConfig())                # EspeakTTS; TtsConfig(backend="none") -> b""
    wav = await tts.synthesize("Hello Ada.")    # a complete WAV file as bytes

The text goes to espeak-ng on stdin, so it can never be read as an option or reach a shell.
The stage is also a health Component (name ``"tts"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from typing import Any

from coda_lite.config import TtsConfig
from coda_lite.speech.audio import fix_streamed_wav
from coda_lite.stats import CallStats


class TTSError(RuntimeError):
    """espeak-ng could not produce audio; the message says why."""


class EspeakTTS:
    name = "tts"

    def __init__(self, config: TtsConfig | None = None) -> None:
        self.config = config or TtsConfig()
        self.stats = CallStats()
        self._exe: str | None = None
        self._locate()

    def _locate(self) -> None:
        self._exe = shutil.which("espeak-ng")

    async def synthesize(self, text: str) -> bytes:
        with self.stats.track(text):
            if not text.strip():
                return b""
            exe = self._exe
            if exe is None:
                raise TTSError("espeak-ng is not installed (apt-get install espeak-ng)")
            cmd = [exe, "-v", self.config.voice, "-s", str(self.config.rate), "--stdin", "--stdout"]
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(
                    proc.communicate(text.encode("utf-8")), self.config.timeout
                )
            except BaseException:  # timeout or cancellation: never leave the child behind
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                raise
            if proc.returncode != 0 or not out:
                detail = err.decode("utf-8", "replace").strip()[:200] or "no output"
                raise TTSError(f"espeak-ng exited with code {proc.returncode}: {detail}")
            return fix_streamed_wav(out, "espeak-ng output")

    async def get_heartbeat(self) -> dict[str, Any]:
        loaded = self._exe is not None
        return self.stats.heartbeat(
            healthy=loaded and self.stats.error_rate < 0.5,
            models_loaded=loaded,
            backend="espeak-ng",
            voice=self.config.voice,
        )

    async def restart(self) -> None:
        self._locate()
        self.stats.reset_window()

    async def force_restart(self) -> None:
        self._exe = None
        await self.restart()


class SilentTTS:
    """``tts.backend: none``: no audio (b"")."""

    name = "tts"

    def __init__(self) -> None:
        self.stats = CallStats()

    async def synthesize(self, text: str) -> bytes:
        with self.stats.track(text):
            return b""

    async def get_heartbeat(self) -> dict[str, Any]:
        return self.stats.heartbeat(healthy=True, models_loaded=True, backend="none")

    async def restart(self) -> None:
        self.stats.reset_window()

    async def force_restart(self) -> None:
        self.stats.reset_window()


def make_tts(config: TtsConfig) -> EspeakTTS | SilentTTS:
    if config.backend in {"espeak-ng", "espeak"}:
        return EspeakTTS(config)
    if config.backend == "none":
        return SilentTTS()
    raise ValueError(f"unknown tts.backend {config.backend!r} (choose espeak-ng or none)")
