"""``coda-otel snapshots``: list, show, diff and plot memory snapshots.

    coda-otel snapshots list [--json]
    coda-otel snapshots show ID [--json]
    coda-otel snapshots diff A B [--json]        # readable table; --json keeps every key
    coda-otel snapshots plot --out memory.png    # needs the plot extra (matplotlib)
    coda-otel snapshots --dir /tmp/snaps list    # default: $CODA_HOME/snapshots (~/.coda)

Ids are validated before they name a file; errors exit with status 2 and one clear line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from coda_otel.snapshots.diff import diff_snapshots, format_diff_table
from coda_otel.snapshots.store import SnapshotStore, default_snapshot_dir, summarise

_SHOW_ROWS = 20


def _store(args: argparse.Namespace) -> SnapshotStore:
    return SnapshotStore(Path(args.dir) if args.dir else default_snapshot_dir())


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


#: Control characters (C0 but the line break, DEL, C1) that a terminal would act on (an ESC
#: sequence can clear the screen or retitle the window): stored text shows them escaped.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x00, 0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def _safe(value: object) -> str:
    """``value`` as text a terminal only displays (control characters escaped as ``\\xNN``)."""
    return str(value).translate(_CONTROLS)


def _print(text: str) -> None:
    print(_safe(text))


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.1f} MiB"


_ROW = "{:<34} {:<19} {:<16} {:<8} {:>5} {:>6} {:>8} {:>6} {:>9}"


def _opt(value: object) -> str:
    return "-" if value is None else str(value)


def cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    infos = store.list()
    if args.json:
        _dump([i.to_dict() for i in infos])
        return 0
    if not infos:
        print(f"no snapshots in {store.folder}")
        return 0
    print(_ROW.format("ID", "TIME (UTC)", "OWNER", "TRIGGER", "OPS", "TURNS", "MEMORIES",
                      "TOPICS", "SIZE"))  # fmt: skip
    for i in infos:
        if i.error:
            _print(f"{i.snapshot_id:<34} {i.timestamp[:19]:<19} unreadable: {i.error}")
            continue
        _print(_ROW.format(i.snapshot_id, i.timestamp[:19], _opt(i.owner), _opt(i.trigger),
                           _opt(i.operation_count), _opt(i.turn_count), _opt(i.memory_count),
                           _opt(i.topic_count), _size(i.size)))  # fmt: skip
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    snap = _store(args).load(args.id)
    if args.json:
        _dump(snap)
        return 0
    counts = summarise(snap)
    st, lt = snap["short_term"], snap["long_term"]
    _print(f"snapshot   {snap.get('snapshot_id')}\ntime       {snap.get('timestamp')}")
    _print(f"trigger    {snap.get('trigger')} (after {snap.get('operation_count')} operations)")
    if snap.get("owner") is not None:
        _print(f"owner      {snap['owner']}")
    _print(f"turns      {counts['turn_count']}\nmemories   {counts['memory_count']}")
    _print(f"topics     {counts['topic_count']}: {', '.join(map(str, lt.get('topics') or []))}")
    memories = list(lt.get("memories") or [])
    if memories:
        _print(f"\nLong-term memories (first {min(_SHOW_ROWS, len(memories))} of {len(memories)})")
        for m in memories[:_SHOW_ROWS]:
            m = m if isinstance(m, dict) else {"content": m}
            content = " ".join(str(m.get("content", "")).split())[:70]
            _print(f"  {m.get('id', '-')!s:<24} {m.get('importance', '-')!s:>6}  {content}")
    turns = list(st.get("turns") or [])
    if turns:
        _print(f"\nShort-term turns (last {min(_SHOW_ROWS, len(turns))} of {len(turns)})")
        for t in turns[-_SHOW_ROWS:]:
            t = t if isinstance(t, dict) else {"content": t}
            content = " ".join(str(t.get("content", "")).split())[:70]
            _print(f"  {t.get('role', '-')!s:<10} {content}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    store = _store(args)
    a, b = store.load(args.a), store.load(args.b)
    owners = (a.get("owner"), b.get("owner"))
    if owners[0] != owners[1]:  # two people's memories: every memory would read as changed
        raise ValueError(
            f"{args.a} holds {_safe(owners[0] or 'no owner')}'s memory and {args.b} holds "
            f"{_safe(owners[1] or 'no owner')}'s: compare two snapshots of one owner "
            "(see the OWNER column of `coda-otel snapshots list`)"
        )
    diff = diff_snapshots(a, b)
    if args.json:
        _dump(diff)
    else:
        sys.stdout.write("\n".join(_safe(line) for line in format_diff_table(diff).split("\n")))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from coda_otel.snapshots.plot import PlotUnavailableError, plot_snapshots

    store = _store(args)
    infos = store.list()
    if not infos:
        raise ValueError(f"no snapshots in {store.folder}")
    try:
        out = plot_snapshots(infos, Path(args.out))
    except PlotUnavailableError as exc:
        print(f"coda-otel: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(infos)} snapshots)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``snapshots`` and its sub-commands to the ``coda-otel`` parser."""
    parser = subparsers.add_parser("snapshots", help="memory snapshots: list, show, diff, plot")
    dir_help = "snapshot folder (default: $CODA_HOME/snapshots, CODA_HOME=~/.coda)"
    parser.add_argument("--dir", default=None, help=dir_help)
    sub = parser.add_subparsers(dest="snapshots_command", required=True)

    def add(
        name: str, func: Any, help_text: str, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", default=argparse.SUPPRESS, help=dir_help)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable JSON output")
        p.set_defaults(func=func)
        return p

    add("list", cmd_list, "snapshots in the folder, oldest first")
    add("show", cmd_show, "one snapshot's counts, memories and turns").add_argument("id")
    diff = add("diff", cmd_diff, "what changed from snapshot A to snapshot B")
    diff.add_argument("a", help="older snapshot id")
    diff.add_argument("b", help="newer snapshot id")
    plot = add("plot", cmd_plot, "PNG of memory counts and topics over time", json_flag=False)
    plot.add_argument("--out", required=True, help="PNG file to write")
