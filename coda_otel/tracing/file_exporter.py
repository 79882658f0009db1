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


class FileSpanExporter(SpanExporter):
    """Append-only OTLP JSON lines under ``folder``, bounded in bytes (rotation + retention)."""

    def __init__(
        self,
        folder: Path,
        *,
        max_file_bytes: int = 8 * 2**20,
        max_files: int = 10,
        max_total_bytes: int = 64 * 2**20,
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

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        if not spans:
            return SpanExportResult.SUCCESS
        try:
            line = encode_json_line(spans)
            with self._lock:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._rotate_if_needed(len(line))
                with open(self.path, "ab") as fh:
                    fh.write(line)
        except (OSError, ValueError) as exc:
            logger.warning("could not write %d spans to %s: %s", len(spans), self.path, exc)
            return SpanExportResult.FAILURE
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


def read_otlp_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Yield each ``ExportTraceServiceRequest`` dict; raises ValueError naming a bad line."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip() or not line.endswith("\n"):
                continue  # blank, or the torn tail of a write cut short by a crash
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from exc
            if not isinstance(request, dict) or "resourceSpans" not in request:
                raise ValueError(f"{path}:{number}: not an OTLP traces request (no resourceSpans)")
            yield request
