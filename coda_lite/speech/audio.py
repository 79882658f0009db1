"""WAV in and out: validation with clear errors, conversion to 16 kHz mono 16-bit PCM.

    from coda_lite.speech.audio import load_pcm16, wav_bytes

    pcm = to_pcm16_mono(data, rate=16000, max_seconds=120)  # int16 mono samples, or AudioError
    data = wav_bytes(pcm, rate=16000)              # a complete, valid WAV file in memory
    wav_info(data).seconds                         # from the header alone: nothing decoded

Errors say what was wrong (empty, silent, truncated, not a WAV, missing file) and are
:class:`AudioError` (an :class:`~coda_lite.errors.InputError`).

Hostile headers are refused before anything is decoded: the sample rate must lie within
:data:`MIN_RATE`..:data:`MAX_RATE`, at most :data:`MAX_CHANNELS` channels, 8/16/32-bit, and
the duration the header and data imply must fit ``max_seconds``; so the decoded and resampled
audio is bounded by ``max_seconds`` at the target rate, whatever the input claims. A file is
not read past :data:`MAX_FILE_BYTES`.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coda_lite.errors import InputError

#: Sizes at or above this in a RIFF header mean "unknown length" (a WAV written to a pipe).
_STREAMED_SIZE = 0x7FFF0000
#: Sample rates accepted (Hz): telephone-band speech up to studio audio.
MIN_RATE, MAX_RATE = 8000, 192_000
MAX_CHANNELS = 8
#: An audio file larger than this is refused before it is read.
MAX_FILE_BYTES = 64 * 2**20
#: Longest audio decoded when the caller sets no limit (seconds).
DEFAULT_MAX_SECONDS = 600.0


class AudioError(InputError):
    """Audio that cannot be recognised; the message names the problem."""


def read_audio(audio: bytes | str | os.PathLike[str]) -> tuple[bytes, str]:
    """The raw bytes of ``audio`` and a label for error messages (the path, or 'audio bytes')."""
    if isinstance(audio, (bytes, bytearray, memoryview)):
        return bytes(audio), f"audio bytes ({len(audio)} bytes)"
    path = Path(audio)
    if not path.exists():
        raise AudioError(f"audio file not found: {path}")
    if not path.is_file():
        raise AudioError(f"audio path is not a file: {path}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise AudioError(f"audio file {path} is {size} bytes; at most {MAX_FILE_BYTES}")
    return path.read_bytes(), f"audio file {path}"


def _data_chunk(data: bytes, label: str) -> tuple[int, int]:
    """Offset and declared size of the 'data' chunk (validates the RIFF/WAVE framing)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError(f"{label} is not a WAV file (no RIFF/WAVE header; starts {data[:12]!r})")
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"data":
            return pos + 8, size
        pos += 8 + size + (size & 1)
    raise AudioError(f"{label} is truncated: no audio data chunk after the WAV header")


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says, checked against the bytes present; nothing decoded."""

    channels: int
    width: int  # bytes per sample
    rate: int
    offset: int  # of the sample data
    data_bytes: int  # whole frames present

    @property
    def frames(self) -> int:
        return self.data_bytes // (self.width * self.channels)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def wav_info(data: bytes, label: str = "audio") -> WavInfo:
    """Read and check the header of a PCM WAV (see the module docstring for the limits)."""
    if not data:
        raise AudioError(f"{label} is empty (0 bytes)")
    offset, declared = _data_chunk(data, label)
    present = len(data) - offset
    if declared < _STREAMED_SIZE and present < declared:
        raise AudioError(
            f"{label} is truncated: the WAV header promises {declared} bytes of audio, "
            f"only {present} are present"
        )
    try:
        with wave.open(io.BytesIO(data), "rb") as w:  # parses the header, reads no frames
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{label} is not a readable PCM WAV file: {exc}") from None
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(
            f"{label} declares a sample rate of {rate} Hz; accepted: {MIN_RATE}..{MAX_RATE} Hz"
        )
    if not 1 <= channels <= MAX_CHANNELS or width not in (1, 2, 4):
        raise AudioError(
            f"{label} has an unsupported format ({channels} channels, {width * 8}-bit, {rate} Hz)"
        )
    size = min(present, declared)
    size -= size % (width * channels)
    if size <= 0:
        raise AudioError(f"{label} holds no audio samples")
    return WavInfo(channels, width, rate, offset, size)


class AudioTooLongError(AudioError):
    """The recording is longer than the recogniser takes (a 413 for an HTTP client)."""


def check_duration(info: WavInfo, max_seconds: float, label: str = "audio") -> None:
    """Refuse audio longer than ``max_seconds`` (known from the header, before decoding)."""
    if info.seconds > max_seconds:
        raise AudioTooLongError(
            f"{label} is {info.seconds:.0f} s long; at most {max_seconds:.0f} s"
        )


def decode_wav(
    data: bytes, label: str = "audio", *, max_seconds: float = DEFAULT_MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """Samples as float32 in [-1, 1], shape (frames, channels), and the sample rate."""
    info = wav_info(data, label)
    check_duration(info, max_seconds, label)
    raw = data[info.offset : info.offset + info.data_bytes]
    width, channels = info.width, info.channels
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    else:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    return samples.reshape(-1, channels), info.rate


def _resample_sox(pcm: bytes, rate: int, target: int) -> bytes | None:
    sox = shutil.which("sox")
    if sox is None:
        return None
    fmt = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1"]
    cmd = [sox, *fmt, "-r", str(rate), "-", *fmt, "-r", str(target), "-"]
    try:
        done = subprocess.run(cmd, input=pcm, capture_output=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def _resample_numpy(mono: np.ndarray, rate: int, target: int) -> np.ndarray:
    n_out = max(1, round(len(mono) * target / rate))
    x_out = np.arange(n_out, dtype=np.float64) * (rate / target)
    out: np.ndarray = np.interp(x_out, np.arange(len(mono)), mono).astype(np.float32)
    return out


def _to_int16(samples: np.ndarray) -> bytes:
    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def to_pcm16_mono(
    data: bytes,
    *,
    rate: int = 16000,
    label: str = "audio",
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> bytes:
    """Decode a WAV and return int16 mono PCM at ``rate`` (sox resamples; numpy if no sox).

    The result holds at most ``max_seconds`` of audio at ``rate`` (longer input is refused
    from its header, before decoding).
    """
    samples, src_rate = decode_wav(data, label, max_seconds=max_seconds)
    mono = samples.mean(axis=1)
    del samples
    if src_rate == rate:
        return _to_int16(mono)
    pcm = _to_int16(mono)
    out = _resample_sox(pcm, src_rate, rate) or _to_int16(_resample_numpy(mono, src_rate, rate))
    bound = 2 * (math.ceil(max_seconds * rate) + 1)
    return out[:bound]


def rms_int16(pcm: bytes) -> float:
    """Root mean square of int16 samples (0 for none)."""
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def wav_bytes(pcm: bytes, *, rate: int, channels: int = 1, width: int = 2) -> bytes:
    """A complete WAV file holding ``pcm``."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


def fix_streamed_wav(data: bytes, label: str = "WAV") -> bytes:
    """Rewrite a WAV written to a pipe (sizes 0x7fff....) with its real sizes."""
    offset, _declared = _data_chunk(data, label)
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{label} is not a readable PCM WAV file: {exc}") from None
    pcm = data[offset:]
    pcm = pcm[: len(pcm) - len(pcm) % (width * channels)]
    return wav_bytes(pcm, rate=rate, channels=channels, width=width)
