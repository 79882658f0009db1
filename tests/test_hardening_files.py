"""Telemetry files when writes fail part-way: whole lines or nothing; readers skip bad lines."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from coda_otel.tracing.file_exporter import read_otlp_json_lines

# A child process with a real file-size limit: the kernel cuts a write short (EFBIG), exactly
# as a full disk does; the limit is then lifted and the exporter writes again.
_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from coda_otel.tracing.file_exporter import FileSpanExporter

    folder = Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of being killed
    exporter = FileSpanExporter(folder)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    def span(i):
        with tracer.start_as_current_span(f"span-{i}") as s:
            s.set_attribute("payload", "x" * 700)
    span(0)
    size = (folder / "traces.jsonl").stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 300, hard))   # room for part of a line
    span(1)                                                       # cut short
    print((folder / "traces.jsonl").stat().st_size == size)       # truncated back
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    span(2)
    provider.shutdown()
    """
)


def test_a_write_cut_short_leaves_no_torn_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True", "the partial line was left in the file"
    skipped: list[str] = []
    requests = list(read_otlp_json_lines(tmp_path / "traces.jsonl", skipped=skipped))
    names = [
        s["name"]
        for r in requests
        for rs in r["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    ]
    assert names == ["span-0", "span-2"] and skipped == []
    assert (tmp_path / "traces.jsonl").stat().st_mode & 0o077 == 0


def _otlp_line(name: str, trace_id: str, start: int, end: int) -> str:
    span = {"traceId": trace_id, "spanId": "ab" * 8, "name": name,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(end), "status": {}}  # fmt: skip
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}) + "\n"


def test_trace_show_skips_and_counts_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    good = _otlp_line("conversation", "cd" * 16, 1_000_000, 9_000_000)
    path.write_text('{"resourceSpans": [{"scopeSp' + good + "not json at all\n" + good)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("coda-otel")), "trace", "show", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "conversation" in done.stdout
    assert "skipped 2 bad line(s)" in done.stderr
