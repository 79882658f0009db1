"""A span exporter writing OTLP JSON lines, the OpenTelemetry Collector file-exporter format.

Each export appends one ``ExportTraceServiceRequest`` as one JSON line to ``traces.jsonl``.
The request is built by the OTLP exporter's own encoder and printed by protobuf's JSON
printer; only what OTLP/JSON defines differently is adjusted (trace and span ids are hex, not
base64; enums are integers). When the file passes ``max_file_bytes`` it is renamed to
``traces-<stamp>.jsonl`` and old rotations are deleted beyond ``max_files`` / ``max_total_bytes``::

    exporter = FileSpanExporter(Path("~/.coda/traces").expanduser())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    ...
    for request in read_otlp_json_lines(exporter.path):   # dicts, as the Collector writes them
        ...

A line is written whole or not at all: when a write fails part-way (a full disk), the file is
truncated back to where the line began, so the next export never appends to a torn line. The
file is created ``0600`` (spans carry conversation metadata). The reader skips a bad line (one
a crash cut short, or not OTLP) and counts it, instead of giving up on the whole file::

    skipped: list[str] = []
    requests = list(read_otlp_json_lines(path, skipped=skipped))   # skipped: ['path:7: ...']
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from coda_otel.files import new_id
from coda_otel.retention import enforce_retention
from coda_otel.write_guard import WriteGuard

logger = logging.getLogger(__name__)

CURRENT_FILE = "traces.jsonl"
ROTATED_PATTERN = "traces-*.jsonl"
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(obj: Any) -> Any:
    """Rewrite base64 id fields (protobuf JSON) as hex (OTLP/JSON), in place, recursively."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_KEYS and isinstance(value, str):
                obj[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids(item)
    return obj


def encode_json_line(spans: Sequence[ReadableSpan]) -> bytes:
    """One OTLP/JSON ``ExportTraceServiceRequest`` line (with trailing newline) for ``spans``."""
    request = json_format.MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    return (json.dumps(_hex_ids(request), separators=(",", ":")) + "\n").encode("utf-8")


def append_whole_line(path: Path, line: bytes) -> None:
    """Append ``line`` to ``path`` (created 0600) entirely, or leave the file as it was."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        start = os.fstat(fd).st_size
        if start and os.pread(fd, 1, start - 1) != b"\n":
            line = b"\n" + line  # a torn tail left by a crash: start a line of our own
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


class FileSpanExporter(SpanExporter):
    """Append-only OTLP JSON lines under ``folder``, bounded in bytes (rotation + retention)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_file_bytes: int = 8 * 2**20,
        max_files: int = 10,
        max_total_bytes: int = 64 * 2**20,
        guard: WriteGuard | None = None,
    ) -> None:
        if max_file_bytes < 1 or max_files < 1 or max_total_bytes < 1:
            raise ValueError("max_file_bytes, max_files and max_total_bytes must be positive")
        self.folder = Path(folder)
        self.path = self.folder / CURRENT_FILE
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        self._shutdown = False
        self.guard = guard if guard is not None else WriteGuard("traces")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            line = encode_json_line(spans)
            if not self.guard.may_write(len(line)):
                return SpanExportResult.FAILURE  # counted: the disk reserve is not for traces
            with self._lock:
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._rotate_if_needed(len(line))
                append_whole_line(self.path, line)
        except (OSError, ValueError) as exc:
            self.guard.failed(exc)  # counted per reason, logged once per burst
            return SpanExportResult.FAILURE
        self.guard.succeeded()
        return SpanExportResult.SUCCESS

    def _rotate_if_needed(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_file_bytes:
            return
        os.replace(self.path, self.folder / f"{new_id('traces')}.jsonl")
        # The current file counts too: keep max_files - 1 rotations and room for it.
        enforce_retention(
            self.folder,
            ROTATED_PATTERN,
            max_files=self.max_files - 1,
            max_bytes=max(0, self.max_total_bytes - self.max_file_bytes),
        )

    def shutdown(self) -> None:
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def trace_files(folder: Path) -> list[Path]:
    """The traces files in ``folder``, oldest first (rotations, then the current file)."""
    rotated = sorted(folder.glob(ROTATED_PATTERN), key=lambda p: (p.stat().st_mtime, p.name))
    current = folder / CURRENT_FILE
    return rotated + ([current] if current.is_file() else [])


def read_otlp_json_lines(
    path: Path, *, skipped: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield each ``ExportTraceServiceRequest`` dict; a bad line is skipped and counted.

    Each skipped line is appended to ``skipped`` (when given) as ``"path:number: reason"``;
    without it, skipped lines are logged once per file.
    """
    bad: list[str] = [] if skipped is None else skipped
    before = len(bad)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip() or not line.endswith("\n"):
                continue  # blank, or the torn tail of a write cut short by a crash
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append(f"{path}:{number}: not a JSON line: {exc}")
                continue
            if not isinstance(request, dict) or "resourceSpans" not in request:
                bad.append(f"{path}:{number}: not an OTLP traces request (no resourceSpans)")
                continue
            yield request
    if skipped is None and len(bad) > before:
        logger.warning("skipped %d bad line(s) in %s; first: %s", len(bad), path, bad[0])
