"""The ``coda-otel`` command: read what coda-otel wrote (traces, conversation logs, snapshots).

    coda-otel trace show --last          # waterfall of the latest conversation
    coda-otel snapshots list             # memory snapshots, newest last
    coda-otel snapshots diff A B --json  # what changed between two snapshots

Each sub-command lives in its own module, which exposes ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

#: Modules that add sub-commands; each has ``register(subparsers) -> None``.
SUBCOMMAND_MODULES: tuple[str, ...] = ("coda_otel.cli.trace", "coda_otel.cli.snapshots")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coda-otel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as exc:
        print(f"coda-otel: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `coda-otel ... | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
