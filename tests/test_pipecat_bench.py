"""The Pipecat benchmark's quick run (echo model) produces its three well-formed rows.

Run as a user runs it (a subprocess: it sets the global tracer provider Pipecat's tracing
uses). Timings are not checked here; the benchmark measures them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import IN_CI, require_tool

if not IN_CI:
    pytest.importorskip(
        "pipecat", reason="pipecat-ai is not installed (pip install 'coda-lite[pipecat]')"
    )

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_quick_pipecat_benchmark_rows(tmp_path: Path) -> None:
    require_tool("espeak-ng")
    out = tmp_path / "bench.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "pipecat", "--out",
         str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {
        "turn, bare pipeline",
        "turn, Pipecat tracing",
        "turn, coda-otel observer",
    }
    bare = rows["turn, bare pipeline"]["value"]
    assert bare > 0
    for name in ("turn, Pipecat tracing", "turn, coda-otel observer"):
        row = rows[name]
        assert row["baseline_value"] == bare and row["ratio"] == pytest.approx(row["value"] / bare)
