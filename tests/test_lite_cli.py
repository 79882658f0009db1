"""The coda-lite command: the demo runs the pipeline offline and says where outputs went."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coda_lite.pipeline.conversation import STAGES
from coda_lite.service.cli import default_script, main
from coda_lite.speech.wer import word_errors
from coda_otel.cli.main import main as otel_main
from coda_otel.tracing.file_exporter import read_otlp_json_lines
from tests.support import require_module, require_tool

pytestmark = [pytest.mark.slow]  # the whole spoken demo: espeak-ng, pocketsphinx, real models


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CODA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CODA_CONFIG", raising=False)
    return tmp_path / "home"


def test_default_script_has_a_memory_dependent_turn() -> None:
    lines = default_script()
    assert any("I live in Lisbon" in ln for ln in lines)
    assert lines.index("Where do I live?") > lines.index("My name is Ada and I live in Lisbon.")


def test_demo_runs_the_default_script_offline(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_module("sentence_transformers")
    require_tool("espeak-ng")
    assert main(["demo", "--text"]) == 0
    out = capsys.readouterr().out
    assert out.count("voice-to-voice ") == 5 and "time to first token" in out
    assert "coda: You told me you live in Lisbon." in out
    assert "coda: You told me your name is Ada." in out
    for stage in ("stt", "memory_retrieval", "llm", "memory_update", "tts"):
        assert f"{stage} " in out
    assert "5 turn(s) answered, 0 failed" in out
    assert str(home / "data" / "memory.sqlite3") in out
    assert (home / "demo_audio" / "turn-05.wav").stat().st_size > 1000


def test_demo_with_script_turns_and_audio(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_module("pocketsphinx")
    require_tool("espeak-ng")
    import subprocess

    wav = tmp_path / "spoken.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us+klatt",
            "-s",
            "160",
            "-w",
            str(wav),
            "what is the weather today",
        ],
        check=True,
    )
    script = tmp_path / "script.txt"
    script.write_text("# comment\nI love green tea.\nWhat do I like to drink?\nunused\n")
    assert main(["demo", "--text", "--script", str(script), "--turns", "2"]) == 0
    out = capsys.readouterr().out
    assert "You told me you love green tea." in out and "unused" not in out
    assert main(["demo", "--audio", str(wav), str(tmp_path / "missing.wav")]) == 1
    out = capsys.readouterr().out
    assert "weather" in out
    assert "stt stage failed" in out and "not found" in out


def test_bad_arguments_get_clear_errors(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--script", str(home / "none.txt")]) == 2
    assert "cannot read script" in capsys.readouterr().err
    assert main(["demo", "--config", str(home / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_demo_leaves_traces_logs_and_a_snapshot_to_look_at(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no OTEL_* set, the demo's traces land in CODA_HOME and coda-otel reads them back."""
    require_module("sentence_transformers")
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo", "--turns", "2"]) == 0  # spoken by espeak-ng, heard by pocketsphinx
    out = capsys.readouterr().out
    assert "says: Hello there!" in out and "says: My name is Ada and I live in Lisbon." in out
    assert "(spoken)" in out and out.count("voice-to-voice ") == 2
    heard = [ln for ln in out.splitlines() if ln.startswith("  you : ")]
    assert len(heard) == 2 and "live in" in heard[1]  # pocketsphinx: names are often misheard
    spans = [
        span
        for request in read_otlp_json_lines(home / "traces" / "traces.jsonl")
        for rs in request["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    roots = [s for s in spans if s["name"] == "conversation"]
    assert len(roots) == 2
    for root in roots:
        children = [s["name"] for s in spans if s.get("parentSpanId") == root["spanId"]]
        assert sorted(children) == sorted(STAGES)
    assert len(list((home / "pipeline_logs").glob("*.json"))) == 2
    capsys.readouterr()
    assert otel_main(["trace", "show", "--last"]) == 0
    shown = capsys.readouterr().out
    assert "memory_retrieval" in shown
    assert "voice-to-voice" in shown and "recognition" in shown and "handoffs" in shown
    assert otel_main(["trace", "show", "--last", "--traces"]) == 0
    shown = capsys.readouterr().out
    assert "voice-to-voice" in shown and "    sentence 0 " in shown  # the tts span's sentences
    assert otel_main(["snapshots", "--dir", str(home / "snapshots"), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    final = [s for s in listed if s["trigger"] == "manual"]
    # the demo's own session's memory, not the (empty) default owner's
    assert final and final[-1]["owner"] == "demo" and final[-1]["memory_count"] >= 1


def test_spoken_demo_prints_the_word_error_rate_and_how_it_heard(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_module("pocketsphinx")
    require_tool("espeak-ng")
    monkeypatch.setenv("CODA_LLM_BACKEND", "echo")  # recognition is what is checked here
    assert main(["demo", "--turns", "2"]) == 0
    out = capsys.readouterr().out
    assert "stt: JSGF grammar" in out and "demo_script.gram" in out
    assert "you : my name is ada and i live in lisbon" in out
    assert "recognition: word error rate 0% (0 of 11 words) over 2 spoken line(s)" in out
    assert main(["demo", "--turns", "2", "--open-vocabulary"]) == 0
    out = capsys.readouterr().out
    summary = next(ln for ln in out.splitlines() if ln.startswith("recognition:"))
    assert summary.endswith("open vocabulary (pocketsphinx en-us language model)")
    errors = int(summary.split("(")[1].split(" of ")[0])
    heard = [ln.split("you : ", 1)[1] for ln in out.splitlines() if "you : " in ln]
    assert errors == sum(
        word_errors(said, got)[0] for said, got in zip(default_script()[:2], heard, strict=True)
    )
