"""Smoke test of the benchmark harness: quick runs produce well-formed rows, table and JSON.

Timings are not checked (benchmarks measure speed; tests check behaviour).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import bench_scrape, bench_stage
from benchmarks.common import Result
from benchmarks.run import MODULES, main

pytestmark = [pytest.mark.slow]  # runs real benchmark rows

UNITS = {"s", "B"}


def check_row(row: Result) -> None:
    assert row.group and row.name
    assert row.unit in UNITS
    assert math.isfinite(row.value) and row.value >= 0
    if row.baseline_value is not None:
        assert row.baseline_name
        assert math.isfinite(row.baseline_value) and row.baseline_value > 0
        assert row.ratio == pytest.approx(row.value / row.baseline_value)
    if row.budget_ratio is not None:
        assert row.baseline_value is not None, f"{row.name}: a ratio budget needs a baseline"
    assert row.ok in (True, False, None)
    json.dumps(row.to_dict())


def test_quick_stage_and_scrape_rows_are_well_formed() -> None:
    rows = bench_stage.run(quick=True) + bench_scrape.run(quick=True)
    assert {r.group for r in rows} == {"stage", "scrape"}
    for row in rows:
        check_row(row)
    budgets = [r for r in rows if r.budget_ratio is not None or r.budget_abs is not None]
    assert budgets, "the issue's budgets must be checked"
    scrape = [r for r in rows if r.group == "scrape"]
    assert all(r.extra["series"] > 100 and r.extra["body_bytes"] > 0 for r in scrape)


def test_run_prints_one_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "scrape", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = [line for line in printed.splitlines() if line.startswith("|")]
    doc = json.loads(out.read_text())
    assert len(table) == 2 + len(doc["results"])  # header, rule, one line per row
    assert doc["machine"]["cores"] >= 1
    assert {r["group"] for r in doc["results"]} == {"scrape"}
    assert all({"value", "baseline_value", "ratio", "ok"} <= r.keys() for r in doc["results"])

    # A later run compares itself with that file, row by row.
    assert main(["--quick", "--only", "scrape", "--compare", str(out), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    compared = printed.split("Compared with", 1)[1]
    assert sum(line.startswith("| scrape |") for line in compared.splitlines()) == len(table) - 2


def test_compare_with_a_bad_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    with pytest.raises(SystemExit) as exc:
        main(["--only", "scrape", "--compare", str(bad)])
    assert exc.value.code == 2
    assert "no 'results' list" in capsys.readouterr().err


def test_unknown_benchmark_name_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--only", "stage,nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown benchmark nope" in err
    assert all(name in err for name in MODULES)


def test_quick_snapshot_rows_fill_the_current_memory_schema() -> None:
    """The snapshot benchmark writes memories straight into SQLite: it must follow the schema."""
    from benchmarks import bench_snapshots

    rows = bench_snapshots.run(quick=True)
    assert {r.group for r in rows} == {"snapshots"}
    for row in rows:
        check_row(row)


def test_a_lower_bound_budget_holds_the_ratio_from_below_and_shows_in_the_table() -> None:
    from benchmarks.run import table

    kept = Result("overload", "goodput, 16", 0.5, "turns/s", "goodput, 4", 0.5,
                  budget_min_ratio=0.9)  # fmt: skip
    collapsed = Result("overload", "goodput, 16", 0.2, "turns/s", "goodput, 4", 0.5,
                       budget_min_ratio=0.9)  # fmt: skip
    assert (kept.ok, collapsed.ok) == (True, False)
    shown = table([kept, collapsed]).splitlines()
    assert shown[2].endswith("| 1.00x | >= 0.9x | yes |")
    assert shown[3].endswith("| 0.40x | >= 0.9x | **no** |")
