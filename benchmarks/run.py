"""Run every benchmark and print one table; also write it as JSON for later comparison.

    python -m benchmarks.run            # full run (make bench)
    python -m benchmarks.run --quick    # fewer iterations, for a smoke check
    python -m benchmarks.run --only stage,cache

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

from benchmarks.common import Result, fmt_value

MODULES = ("stage", "cache", "scrape", "snapshots", "turn", "exporter", "memory_growth")
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
        ok = {True: "yes", False: "**no**", None: "-"}[r.ok]
        rows.append(
            f"| {r.group} | {r.name} | {fmt_value(r.value, r.unit)} | {r.baseline_name or '-'} | "
            f"{fmt_value(r.baseline_value, r.unit) if r.baseline_value is not None else '-'} | "
            f"{fmt_ratio(r.ratio)} | {' '.join(budget) or '-'} | "
            f"{ok} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated module names")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"machine": info, "results": [r.to_dict() for r in results]}, indent=2)
    )
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
