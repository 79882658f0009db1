"""Run every benchmark and print one table; also write it as JSON for later comparison.

    python -m benchmarks.run            # full run (make bench)
    python -m benchmarks.run --quick    # fewer iterations, for a smoke check
    python -m benchmarks.run --only stage,cache
    python -m benchmarks.run --compare benchmarks/results/reference.json   # before/after

Each ``benchmarks/bench_*.py`` module exposes ``run(quick: bool) -> list[Result]``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Result, fmt_value
from coda_otel.files import atomic_write_json

MODULES = (
    "stage",
    "cache",
    "scrape",
    "scrape_load",
    "snapshots",
    "turn",
    "exporter",
    "memory_growth",
    "voice",
    "pipecat",
    "traces",
    "answers",
    "overload",
)
RESULTS_DIR = Path(__file__).parent / "results"


def machine() -> dict[str, object]:
    import psutil

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        # Other work on the machine moves absolute figures; ratios are measured interleaved.
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "os": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def fmt_ratio(ratio: float | None) -> str:
    """``1.23x``; tiny ratios (a cache hit against a model call) keep 3 significant digits."""
    if ratio is None:
        return "-"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3g}x"


def table(results: list[Result]) -> str:
    head = "| group | measure | value | baseline | baseline value | ratio | budget | ok |"
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    for r in results:
        budget = []
        if r.budget_ratio is not None:
            budget.append(f"<= {r.budget_ratio:g}x")
        if r.budget_abs is not None:
            budget.append(f"<= {fmt_value(r.budget_abs, r.unit)}")
        if r.budget_min_ratio is not None:
            budget.append(f">= {r.budget_min_ratio:g}x")
        ok = {True: "yes", False: "**no**", None: "-"}[r.ok]
        rows.append(
            f"| {r.group} | {r.name} | {fmt_value(r.value, r.unit)} | {r.baseline_name or '-'} | "
            f"{fmt_value(r.baseline_value, r.unit) if r.baseline_value is not None else '-'} | "
            f"{fmt_ratio(r.ratio)} | {' '.join(budget) or '-'} | "
            f"{ok} |"
        )
    return "\n".join(rows)


def load_results(path: Path) -> dict[str, Any]:
    """A results file written by an earlier run; ValueError says what is wrong with it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"no results file at {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable results file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ValueError(f"{path} has no 'results' list (not written by benchmarks.run)")
    return doc


def comparison(results: list[Result], before: dict[str, Any]) -> str:
    """Each row's figure now against the same row in ``before``: the ratio to its baseline
    when it has one (robust to a faster or slower machine), else the value."""
    old = {
        (r.get("group"), r.get("name"), r.get("baseline_name")): r
        for r in before["results"]
        if isinstance(r, dict)
    }
    rows = ["| group | measure | before | now | change |", "|---|---|---|---|---|"]
    for r in results:
        prev = old.get((r.group, r.name, r.baseline_name))
        if prev is None:
            continue
        if r.ratio is not None and isinstance(prev.get("ratio"), int | float):
            a, b, shown = prev["ratio"], r.ratio, (fmt_ratio(prev["ratio"]), fmt_ratio(r.ratio))
        elif isinstance(prev.get("value"), int | float):
            a, b = prev["value"], r.value
            shown = (fmt_value(a, r.unit), fmt_value(b, r.unit))
        else:
            continue
        change = f"{b / a:.2f}x" if a else "-"
        rows.append(f"| {r.group} | {r.name} | {shown[0]} | {shown[1]} | {change} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated module names")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--compare", type=Path, help="an earlier results JSON to compare with")
    args = parser.parse_args(argv)
    before = None
    if args.compare is not None:
        try:
            before = load_results(args.compare)
        except ValueError as exc:
            parser.error(str(exc))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(MODULES)}")
    names = [n for n in MODULES if not only or n in only]
    results: list[Result] = []
    for name in names:
        t0 = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        got = module.run(quick=args.quick)
        results.extend(got)
        print(f"# {name}: {len(got)} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    info = machine()
    print(f"Machine: {info['cores']} cores, {info['memory_gib']} GiB, Python {info['python']}, "
          f"{info['os']}, load {info['load_avg_1m']} ({info['date']})")  # fmt: skip
    print(table(results))
    if before is not None:
        print(f"\nCompared with {args.compare} ({before.get('machine', {}).get('date', '?')}):")
        print(comparison(results, before))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": info, "results": [r.to_dict() for r in results]}
    atomic_write_json(args.out, doc, indent=2)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
