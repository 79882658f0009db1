"""``coda-otel trace show``: print a conversation as a waterfall in the terminal.

coda-otel trace show                      # the latest conversation log (same as --last)
coda-otel trace show --last --traces      # the last trace in CODA_HOME/traces/
coda-otel trace show path/to/pipeline-....json
coda-otel trace show traces.jsonl --trace-id 4bf92f3577b34da6a3ce929d0e0e4736
coda-otel trace show --dir /var/coda/pipeline_logs --width 80
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from coda_otel import env
from coda_otel.pipeline.conversation_log import latest_log
from coda_otel.tracing.file_exporter import trace_files
from coda_otel.tracing.waterfall import Waterfall, load, render


def register(subparsers: Any) -> None:
    """Add ``trace show`` to the ``coda-otel`` command (see :mod:`coda_otel.cli.main`)."""
    trace = subparsers.add_parser("trace", help="show recorded conversations")
    actions = trace.add_subparsers(dest="trace_command", required=True)
    show = actions.add_parser("show", help="print one conversation as a waterfall")
    show.add_argument("file", nargs="?", type=Path, help="a conversation log or traces file")
    show.add_argument("--last", action="store_true", help="the latest conversation (default)")
    show.add_argument("--dir", type=Path, help="folder to look in (default: under CODA_HOME)")
    show.add_argument("--traces", action="store_true", help="read the traces folder, not logs")
    show.add_argument("--trace-id", help="which trace of a traces file to show")
    show.add_argument("--width", type=int, default=50, help="bar width in columns")
    show.set_defaults(func=show_command)


def _latest(folder: Path | None, traces: bool) -> Path:
    home = env.coda_home()
    if traces:
        folder = folder or home / "traces"
        files = trace_files(folder) if folder.is_dir() else []
        if not files:
            raise FileNotFoundError(f"no traces files in {folder}")
        return files[-1]
    folder = folder or home / "pipeline_logs"
    found = latest_log(folder)
    if found is None:
        files = trace_files(folder) if folder.is_dir() else []
        if files:  # --dir pointed at a traces folder
            return files[-1]
        raise FileNotFoundError(f"no conversation logs in {folder}")
    return found


def show_command(args: argparse.Namespace) -> int:
    if args.file is not None and args.last:
        raise ValueError("give a FILE or --last, not both")
    path = args.file if args.file is not None else _latest(args.dir, args.traces)
    skipped: list[str] = []
    waterfall: Waterfall = load(path, args.trace_id, skipped=skipped)
    print(render(waterfall, width=args.width))
    if skipped:
        print(f"skipped {len(skipped)} bad line(s) in {path}; first: {skipped[0]}", file=sys.stderr)
    return 0
