"""Speech to text: pocketsphinx, offline. WAV bytes or a WAV path in, text out.

    from coda_lite.config import SttConfig
    from coda_lite.speech.stt import make_stt

    stt = make_stt(SttConfig())                    # PocketSphinxSTT, model loaded once
    text = await stt.transcribe("turn.wav")         # any rate/channels: resampled to 16 kHz mono

Bad audio raises :class:`~coda_lite.speech.audio.AudioError` saying what was wrong (empty, silent,
truncated, not a WAV, missing file). The stage is also a health Component (name ``"stt"``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

from coda_lite.config import SttConfig
from coda_lite.speech.audio import AudioError, read_audio, rms_int16, to_pcm16_mono
from coda_lite.stats import CallStats

#: Recordings up to this long are decoded in one call (the whole-utterance normalisation
#: recognises best; the GIL is held about a second at most). Longer ones go in blocks of
#: DECODE_BLOCK_BYTES (0.25 s at 16 kHz, 16-bit): the event loop's thread runs between them.
WHOLE_UTTERANCE_S = 8.0
DECODE_BLOCK_BYTES = 8000


def read_pronunciations(path: Path) -> list[tuple[str, str]]:
    """(word, phones) from a dictionary file: ``lisbon(2) L IH S B AH N`` ('#' lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"stt.words {path}: {exc.strerror or exc}") from None
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        word, _, phones = line.strip().partition(" ")
        if not word or word.startswith("#"):
            continue
        if not phones.strip():
            raise ValueError(f"stt.words {path} line {n}: {word!r} has no phones")
        entries.append((word.lower(), " ".join(phones.split()).upper()))
    return entries


class PocketSphinxSTT:
    """CMU pocketsphinx decoder (thread-safe: one decode at a time, off the event loop)."""

    name = "stt"

    def __init__(self, config: SttConfig | None = None) -> None:
        self.config = config or SttConfig()
        self.stats = CallStats()
        self._lock = threading.Lock()
        self._decoder: Any = None
        self._load()

    def _load(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # the 'speech' extra is missing
            raise RuntimeError(
                "pocketsphinx is not installed: pip install 'coda-lite[speech]' "
                "or set stt.backend: none"
            ) from exc
        kwargs: dict[str, Any] = {"samprate": self.config.sample_rate, "loglevel": "FATAL"}
        if self.config.model_path is not None:
            kwargs["hmm"] = str(self.config.model_path)
        if self.config.lm_weight > 0:
            kwargs["lw"] = self.config.lm_weight
        decoder = Decoder(**kwargs)
        if self.config.words is not None:
            for word, phones in read_pronunciations(self.config.words):
                try:
                    decoder.add_word(word, phones, True)
                except RuntimeError as exc:
                    raise ValueError(
                        f"stt.words {self.config.words}: cannot add {word!r} ({phones}): {exc}"
                    ) from None
        if self.config.grammar is not None:
            if not self.config.grammar.is_file():  # pocketsphinx would crash on it
                raise ValueError(f"stt.grammar {self.config.grammar} is not usable: no such file")
            try:
                decoder.add_jsgf_file("grammar", str(self.config.grammar))
                decoder.activate_search("grammar")
            except (RuntimeError, OSError) as exc:
                raise ValueError(
                    f"stt.grammar {self.config.grammar} is not usable: {exc}"
                ) from None
        with self._lock:
            self._decoder = decoder

    @property
    def models_loaded(self) -> bool:
        return self._decoder is not None

    async def transcribe(self, audio: bytes | str | os.PathLike[str]) -> str:
        return await asyncio.to_thread(self._transcribe_sync, audio)

    def _transcribe_sync(self, audio: bytes | str | os.PathLike[str]) -> str:
        with self.stats.track():
            data, label = read_audio(audio)
            rate = self.config.sample_rate
            # the duration is checked from the header, before anything is decoded
            limit = self.config.max_seconds
            pcm = to_pcm16_mono(data, rate=rate, label=label, max_seconds=limit)
            seconds = len(pcm) / 2 / rate
            level = rms_int16(pcm)
            if level < self.config.silence_rms:
                raise AudioError(f"{label} is silent (RMS level {level:.1f}, no speech to hear)")
            with self._lock:
                decoder = self._decoder
                if decoder is None:
                    raise RuntimeError("speech recogniser is not loaded (restart in progress)")
                decoder.start_utt()
                if seconds <= WHOLE_UTTERANCE_S:  # one call: the most accurate decoding
                    decoder.process_raw(pcm, full_utt=True)
                else:
                    # pocketsphinx holds the GIL for the length of each call (about 0.1 s per
                    # second of audio here): a long recording is fed in blocks, so the event
                    # loop's thread runs between them instead of stopping for seconds
                    for start in range(0, len(pcm), DECODE_BLOCK_BYTES):
                        block = pcm[start : start + DECODE_BLOCK_BYTES]
                        decoder.process_raw(block, full_utt=False)
                decoder.end_utt()
                hyp = decoder.hyp()
            text = (hyp.hypstr if hyp is not None else "").strip()
            if not text:
                raise AudioError(f"no words recognised in {label} ({seconds:.1f} s of sound)")
            return text

    async def get_heartbeat(self) -> dict[str, Any]:
        loaded = self.models_loaded
        return self.stats.heartbeat(
            healthy=loaded and self.stats.error_rate < 0.5,
            models_loaded=loaded,
            backend="pocketsphinx",
        )

    async def restart(self) -> None:
        await asyncio.to_thread(self._load)
        self.stats.reset_window()

    async def force_restart(self) -> None:
        with self._lock:
            self._decoder = None
        await self.restart()


class TextOnlySTT:
    """``stt.backend: none``: text turns only; audio is refused with a clear error."""

    name = "stt"

    def __init__(self) -> None:
        self.stats = CallStats()

    async def transcribe(self, audio: bytes | str | os.PathLike[str]) -> str:
        with self.stats.track():
            raise AudioError("speech recognition is disabled (stt.backend: none); send text")

    async def get_heartbeat(self) -> dict[str, Any]:
        return self.stats.heartbeat(healthy=True, models_loaded=True, backend="none")

    async def restart(self) -> None:
        self.stats.reset_window()

    async def force_restart(self) -> None:
        self.stats.reset_window()


def make_stt(config: SttConfig) -> PocketSphinxSTT | TextOnlySTT:
    if config.backend == "pocketsphinx":
        return PocketSphinxSTT(config)
    if config.backend == "none":
        return TextOnlySTT()
    raise ValueError(f"unknown stt.backend {config.backend!r} (choose pocketsphinx or none)")
