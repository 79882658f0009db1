"""Speech stages on real backends: espeak-ng speaks, pocketsphinx listens; bad audio is named."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from coda_lite.config import SttConfig, TtsConfig
from coda_lite.speech.audio import AudioError, decode_wav, wav_bytes
from coda_lite.speech.stt import PocketSphinxSTT, make_stt
from coda_lite.speech.tts import EspeakTTS, make_tts
from coda_otel.protocols import Component
from tests.support import require_module, require_tool


@pytest.fixture(scope="module")
def stt() -> PocketSphinxSTT:
    require_module("pocketsphinx")
    return PocketSphinxSTT(SttConfig())


@pytest.fixture
def tts() -> EspeakTTS:
    require_tool("espeak-ng")
    return EspeakTTS(TtsConfig())


async def test_espeak_returns_a_valid_wav(tts: EspeakTTS) -> None:
    data = await tts.synthesize("Hello, this is Coda.")
    with wave.open(io.BytesIO(data), "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        frames = w.getnframes()
        assert frames > w.getframerate() // 4  # more than a quarter second of speech
        assert len(w.readframes(frames)) == frames * 2  # header sizes are the real ones
    beat = await tts.get_heartbeat()
    assert beat["healthy"] and beat["models_loaded"] and beat["calls"] == 1


async def test_text_that_looks_like_an_option_is_spoken_not_parsed(tts: EspeakTTS) -> None:
    data = await tts.synthesize("--version; rm -rf / $(echo hi)")
    assert data[:4] == b"RIFF" and len(data) > 1000


async def test_tts_none_backend_is_silent() -> None:
    tts = make_tts(TtsConfig(backend="none"))
    assert await tts.synthesize("anything") == b""


async def test_pocketsphinx_transcribes_what_espeak_said(
    stt: PocketSphinxSTT, tts: EspeakTTS, tmp_path: Path
) -> None:
    wav = await tts.synthesize("what is the weather today")
    text = await stt.transcribe(wav)
    assert "weather" in text and "today" in text
    # the same from a path, after conversion to 44.1 kHz stereo (resampled back to 16 kHz mono)
    samples, rate = decode_wav(wav)
    t_old = np.arange(len(samples)) / rate
    t_new = np.arange(int(len(samples) * 44100 / rate)) / 44100
    mono = np.interp(t_new, t_old, samples[:, 0])
    stereo = np.repeat((mono * 32767).astype("<i2")[:, None], 2, axis=1)
    path = tmp_path / "stereo.wav"
    path.write_bytes(wav_bytes(stereo.tobytes(), rate=44100, channels=2))
    text = await stt.transcribe(path)
    assert "weather" in text
    beat = await stt.get_heartbeat()
    assert beat["healthy"] and beat["models_loaded"] and beat["response_time"] > 0


def _silence(seconds: float = 1.0, rate: int = 16000) -> bytes:
    return wav_bytes(b"\0\0" * int(seconds * rate), rate=rate)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: b"", "empty"),
        (lambda p: _silence(), "silent"),
        (lambda p: b"This is plain text, not audio at all.", "not a WAV"),
        (lambda p: _silence(2.0)[:5000], "truncated"),
        (lambda p: _silence()[:30], "truncated"),
        (lambda p: p / "missing.wav", "not found"),
    ],
    ids=["empty", "silent", "non-wav", "truncated", "header-only", "missing-file"],
)
async def test_bad_audio_gets_an_error_that_names_the_problem(
    stt: PocketSphinxSTT, tmp_path: Path, make: object, needle: str
) -> None:
    audio = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(AudioError, match=needle):
        await stt.transcribe(audio)
    # bad input is the caller's fault: the recogniser stays healthy and keeps working
    assert (await stt.get_heartbeat())["healthy"]


async def test_stt_restart_reloads_the_decoder(stt: PocketSphinxSTT, tts: EspeakTTS) -> None:
    assert isinstance(stt, Component) and stt.name == "stt"
    await stt.force_restart()
    assert (await stt.get_heartbeat())["models_loaded"]
    await stt.restart()
    text = await stt.transcribe(await tts.synthesize("where do i live"))
    assert "live" in text


async def test_text_only_stt_refuses_audio_clearly() -> None:
    stt = make_stt(SttConfig(backend="none"))
    with pytest.raises(AudioError, match="disabled"):
        await stt.transcribe(b"RIFF")


def test_unknown_backends_are_named() -> None:
    with pytest.raises(ValueError, match="whisper"):
        make_stt(SttConfig(backend="whisper"))
    with pytest.raises(ValueError, match="festival"):
        make_tts(TtsConfig(backend="festival"))


async def test_a_grammar_limits_what_is_heard_and_bad_word_files_are_named(
    tmp_path: Path,
) -> None:
    require_module("pocketsphinx")
    require_tool("espeak-ng")
    grammar = tmp_path / "g.gram"
    grammar.write_text("#JSGF V1.0;\ngrammar g;\npublic <s> = where do i live | what is my name;\n")
    wav = await EspeakTTS(TtsConfig()).synthesize("What is my name?")
    heard = await PocketSphinxSTT(SttConfig(grammar=grammar)).transcribe(wav)
    assert heard == "what is my name"
    words = tmp_path / "names.dict"
    words.write_text("# extra names\nzyxia Z IH K S IY AH\n")
    assert (await PocketSphinxSTT(SttConfig(words=words)).transcribe(wav)).strip()
    words.write_text("zyxia\n")
    with pytest.raises(ValueError, match=r"names\.dict line 1: 'zyxia' has no phones"):
        PocketSphinxSTT(SttConfig(words=words))
    with pytest.raises(ValueError, match=r"stt\.grammar \S+ is not usable"):
        PocketSphinxSTT(SttConfig(grammar=tmp_path / "missing.gram"))


@pytest.mark.slow  # 12 s of audio through the real recogniser
async def test_a_long_recording_never_stops_the_event_loop(stt: PocketSphinxSTT) -> None:
    """12 s of noise (past the 8 s decoded whole, under stt.max_seconds) takes the recogniser
    seconds; decoded in blocks, the loop keeps running meanwhile (one call on the whole clip
    held the GIL throughout)."""
    import asyncio
    import time

    rng = np.random.default_rng(7)
    noise = (rng.standard_normal(16000 * 12) * 3000).astype(np.int16)
    wav = wav_bytes(noise.tobytes(), rate=16000)
    longest_gap = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal longest_gap
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest_gap = max(longest_gap, now - last)
            last = now

    ticker = asyncio.create_task(tick())
    t0 = time.perf_counter()
    try:
        with pytest.raises(AudioError):  # noise: nothing recognised, or words of noise
            await stt.transcribe(wav)
            raise AudioError("recognised words in noise")  # either way the loop is the point
    finally:
        done.set()
        await ticker
    took = time.perf_counter() - t0
    # a budget far from both outcomes: blocks keep gaps to tens of ms; one call, to `took`
    assert longest_gap < max(2.0, took / 2), (longest_gap, took)


async def test_a_recording_over_the_limit_is_refused_before_decoding(stt: PocketSphinxSTT) -> None:
    from coda_lite.speech.audio import AudioTooLongError

    too_long = wav_bytes(np.zeros(16000 * 31, dtype=np.int16).tobytes(), rate=16000)
    with pytest.raises(AudioTooLongError, match="at most 30 s"):
        await stt.transcribe(too_long)
