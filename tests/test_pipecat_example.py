"""``examples/pipecat_assistant.py``: three spoken turns through a real Pipecat pipeline.

The example runs as a user runs it (a subprocess, CODA_HOME a temporary folder, no OTLP
endpoint): the traces file must hold three turn traces whose root ``conversation`` holds
``stt``, ``llm`` and ``tts``, each with a voice-to-voice latency its breakdown adds up to.
The echo model keeps it fast; the local model is the same code path (``--llm local``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coda_otel.pipeline import read_log
from coda_otel.tracing.file_exporter import read_otlp_json_lines
from coda_otel.tracing.waterfall import from_otlp
from tests.support import IN_CI, require_tool

if not IN_CI:
    pytest.importorskip(
        "pipecat", reason="pipecat-ai is not installed (pip install 'coda-lite[pipecat]')"
    )

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_three_spoken_turns_leave_three_traces_with_a_breakdown_that_adds_up(
    tmp_path: Path,
) -> None:
    require_tool("espeak-ng")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CODA_"))}
    env.update(CODA_HOME=str(tmp_path), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pipecat_assistant.py"), "--turns", "3",
         "--llm", "echo"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("voice-to-voice") == 3, done.stdout  # one waterfall per turn
    requests = list(read_otlp_json_lines(tmp_path / "traces" / "traces.jsonl"))
    logs = sorted((tmp_path / "pipeline_logs").glob("*.json"))
    assert len(logs) == 3
    for path in logs:
        log = read_log(path)
        # the conversation log keeps the measures in integer microseconds: an exact sum
        latency = log["latency"]
        assert latency["voice_to_voice_us"] == sum(latency["breakdown_us"].values()) > 0
        # the exported trace: a root conversation holding the three stages, same measures
        trace = from_otlp(requests, log["trace_id"])
        assert sorted(bar.name for bar in trace.bars if bar.depth == 0) == ["llm", "stt", "tts"]
        assert trace.latency is not None
        assert trace.latency["breakdown_us"] == latency["breakdown_us"]
        assert trace.latency["voice_to_voice_us"] == latency["voice_to_voice_us"]
