"""`coda-otel snapshots list|show|diff|plot` on snapshots written by the real emitter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coda_otel.cli.main import main
from coda_otel.snapshots.emitter import MemorySnapshotEmitter
from coda_otel.testing import InMemoryMemory
from tests.support import require_module


@pytest.fixture(scope="module")
def snap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three snapshots: 'first', then a clear ('cleared'), then new facts ('later')."""
    folder = tmp_path_factory.mktemp("snaps")
    memory = InMemoryMemory()
    memory.add_turn("user", "I like tea")
    memory.add_memory("m1", "likes tea", 0.4, ["drinks"])
    memory.add_memory("m2", "lives in Oslo", 0.9, ["home"])
    with MemorySnapshotEmitter(memory, folder, interval=100) as emitter:
        emitter.take_snapshot("first")
        emitter.flush(10)
        memory.clear()
        emitter.take_snapshot("cleared", trigger="clear")
        emitter.flush(10)
        memory.add_turn("user", "I play chess")
        memory.add_memory("m3", "plays chess", 0.6, ["games", "hobbies"])
        emitter.take_snapshot("later")
    return folder


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["snapshots", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_snapshots_oldest_first(snap_dir, capsys):
    code, out, _ = run(capsys, "--dir", str(snap_dir), "list")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["ID", "TIME", "(UTC)"]
    assert [r.split()[0] for r in rows] == ["first", "cleared", "later"]
    fields = rows[0].split()
    # owner (none here) trigger ops turns memories topics
    assert fields[2:8] == ["-", "manual", "0", "1", "2", "2"]
    assert rows[1].split()[3] == "clear"


def test_list_json_and_dir_after_subcommand(snap_dir, capsys):
    code, out, _ = run(capsys, "list", "--json", "--dir", str(snap_dir))
    assert code == 0
    listed = json.loads(out)
    assert [(s["snapshot_id"], s["memory_count"], s["topic_count"]) for s in listed] == [
        ("first", 2, 2), ("cleared", 0, 0), ("later", 1, 2),
    ]  # fmt: skip
    assert all(s["size"] > 0 and s["error"] is None for s in listed)


def test_show_prints_counts_memories_and_turns(snap_dir, capsys):
    code, out, _ = run(capsys, "--dir", str(snap_dir), "show", "first")
    assert code == 0
    assert "snapshot   first" in out and "memories   2" in out
    assert "topics     2: drinks, home" in out
    assert any(line.split()[:3] == ["m2", "0.9", "lives"] for line in out.splitlines())
    assert any(line.split() == ["user", "I", "like", "tea"] for line in out.splitlines())
    code, out, _ = run(capsys, "--dir", str(snap_dir), "show", "later", "--json")
    assert json.loads(out)["long_term"]["memories"][0]["id"] == "m3"


def test_diff_table_and_json(snap_dir, capsys):
    code, out, _ = run(capsys, "--dir", str(snap_dir), "diff", "first", "later")
    assert code == 0
    assert "Memories added (1)" in out and "Memories removed (2)" in out
    assert "Topics added: games, hobbies" in out and "Topics removed: drinks, home" in out
    code, out, _ = run(capsys, "--dir", str(snap_dir), "diff", "first", "later", "--json")
    diff = json.loads(out)
    assert (diff["snapshot_id1"], diff["snapshot_id2"]) == ("first", "later")
    assert [m["id"] for m in diff["new_memories"]] == ["m3"]
    assert sorted(m["id"] for m in diff["removed_memories"]) == ["m1", "m2"]
    assert diff["long_term"] == {"memory_count_diff": -1, "topic_count_diff": 0}


@pytest.mark.parametrize(
    "args, message",
    [(["show", "../../etc/passwd"], "path separators"), (["show", "nope"], "no snapshot 'nope'"),
     (["diff", "first", "/etc/passwd"], "path separators"), (["show", "a" * 200], "at most 128")],
)  # fmt: skip
def test_bad_ids_exit_2_with_one_clear_line(snap_dir, capsys, args, message):
    code, out, err = run(capsys, "--dir", str(snap_dir), *args)
    assert code == 2 and out == ""
    assert err.startswith("coda-otel: error:") and message in err and err.count("\n") == 1


def test_plot_writes_a_png(snap_dir, tmp_path, capsys):
    require_module("matplotlib")
    out_file = tmp_path / "evolution.png"
    code, out, _ = run(capsys, "--dir", str(snap_dir), "plot", "--out", str(out_file))
    assert code == 0 and f"wrote {out_file} (3 snapshots)" in out
    data = out_file.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1000, 600)


def test_plot_and_list_on_an_empty_folder(tmp_path, capsys):
    code, out, _ = run(capsys, "--dir", str(tmp_path), "list")
    assert code == 0 and out.strip() == f"no snapshots in {tmp_path}"
    code, _, err = run(capsys, "--dir", str(tmp_path), "plot", "--out", str(tmp_path / "x.png"))
    assert code == 2 and "no snapshots in" in err


def test_installed_command_uses_coda_home(snap_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "snapshots").symlink_to(snap_dir)
    exe = Path(sys.executable).with_name("coda-otel")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "coda_otel.cli.main"]
    result = subprocess.run(
        [*cmd, "snapshots", "list", "--json"],
        env={"CODA_HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [s["snapshot_id"] for s in json.loads(result.stdout)] == ["first", "cleared", "later"]


class OwnedMemory(InMemoryMemory):
    """Each owner's memory apart, as Coda Lite's store keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.by_owner: dict[str, InMemoryMemory] = {}

    def read_memory_state(self, owner: str | None = None) -> dict[str, Any]:  # type: ignore[override]
        mine = self.by_owner.setdefault(owner or "default", InMemoryMemory())
        return {**mine.read_memory_state(), "owner": owner or "default"}


@pytest.fixture
def owned_dir(tmp_path: Path) -> Path:
    memory = OwnedMemory()
    memory.by_owner["ada"] = InMemoryMemory()
    memory.by_owner["ada"].add_memory("m1", "My name is \x1b[2J\x1b]0;pwned\x07Ada", 0.5, ["name"])
    memory.by_owner["bo"] = InMemoryMemory()
    memory.by_owner["bo"].add_memory("m2", "I live in Oslo", 0.5, ["home"])
    with MemorySnapshotEmitter(memory, tmp_path, interval=100) as emitter:
        emitter.take_snapshot("ada-1", owner="ada")
        emitter.take_snapshot("ada-2", owner="ada")
        emitter.take_snapshot("bo-1", owner="bo")
    return tmp_path


def test_list_names_each_snapshots_owner(
    owned_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--dir", str(owned_dir), "list")
    assert code == 0 and out.splitlines()[0].split()[3] == "OWNER"
    owners = {row.split()[0]: row.split()[2] for row in out.splitlines()[1:]}
    assert owners == {"ada-1": "ada", "ada-2": "ada", "bo-1": "bo"}


def test_diff_refuses_two_owners_and_says_why(
    owned_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--dir", str(owned_dir), "diff", "ada-1", "bo-1")
    assert code == 2 and out == ""
    assert "ada's memory" in err and "bo's" in err and "OWNER" in err
    assert run(capsys, "--dir", str(owned_dir), "diff", "ada-1", "ada-2")[0] == 0


def test_stored_control_characters_reach_the_terminal_escaped(
    owned_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for args in (("show", "ada-1"), ("list",)):
        code, out, _ = run(capsys, "--dir", str(owned_dir), *args)
        assert code == 0 and "\x1b" not in out and "\x07" not in out
    _, shown, _ = run(capsys, "--dir", str(owned_dir), "show", "ada-1")
    assert "\\x1b[2J" in shown and "Ada" in shown
