"""The ``coda-otel`` command line: read traces, conversation logs and snapshots from disk.

    coda-otel trace show --last          # waterfall of the latest conversation
    coda-otel snapshots list             # memory snapshots under $CODA_HOME/snapshots
    coda-otel snapshots diff A B         # what changed between two snapshots

From Python, ``main(["snapshots", "list"])`` runs the same thing and returns the exit code.
"""

from __future__ import annotations

from coda_otel.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
