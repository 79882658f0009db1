"""The package's public surface: top-level names, the README example, one home, logging."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import pkgutil
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import coda_otel
from coda_otel import env
from coda_otel.testing import InMemoryMemory, capture_pipeline_events

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ["cache", "cli", "console", "health", "pipeline", "snapshots", "tracing", "web", "ws"]


def test_every_top_level_name_imports() -> None:
    for name in coda_otel.__all__:
        assert getattr(coda_otel, name) is not None, name
    from coda_otel.pipeline import ConversationPipelineDebugger

    assert coda_otel.ConversationPipelineDebugger is ConversationPipelineDebugger


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_says_what_it_offers(name: str) -> None:
    package = importlib.import_module(f"coda_otel.{name}")
    doc = package.__doc__ or ""
    assert len(doc.splitlines()) >= 5 and "    " in doc, f"coda_otel.{name} needs a usage docstring"
    for exported in getattr(package, "__all__", []):
        assert getattr(package, exported) is not None
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"coda_otel.{name}.{module.name}")


def test_readme_example_runs_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Using coda-otel on your own pipeline") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the README lost its example"
    monkeypatch.setenv(env.CODA_HOME, str(tmp_path))
    monkeypatch.setenv(env.OTEL_TRACES_EXPORTER, "none")
    source = "async def _example(text, llm):\n" + textwrap.indent(code.group(1), "    ")
    namespace: dict[str, object] = {}
    exec(compile(source, "README.md", "exec"), namespace)

    async def llm(text: str) -> str:
        return text.upper()

    asyncio.run(namespace["_example"]("hello", llm))  # type: ignore[operator]


async def test_readme_testing_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Testing your pipeline") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code, "the README lost its testing example"
    debugger = coda_otel.ConversationPipelineDebugger(output_dir=tmp_path, save_logs=False)

    class MyPipeline:  # three stages through the debugger, as a user's pipeline would
        async def run(self, text: str) -> None:
            with debugger.conversation(session_id="s", turn=1) as conv:
                for name in ("stt", "llm", "tts"):
                    async with conv.stage(name, {"text": text}) as st:
                        st.set_output({"text": text})

    namespace: dict[str, object] = {"my_pipeline": MyPipeline()}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    try:
        await namespace["test_my_turn_has_three_stages"](debugger)  # type: ignore[operator]
        await namespace["test_snapshots"](tmp_path / "snaps")  # type: ignore[operator]
    finally:
        debugger.close()


def test_default_snapshot_folder_is_the_one_the_cli_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(env.CODA_HOME, str(tmp_path / "home"))
    memory = InMemoryMemory()
    memory.add_interaction("m1", "I live in Lisbon", ["home"])
    emitter = coda_otel.MemorySnapshotEmitter(memory)
    try:
        emitter.take_snapshot("from-defaults")
        assert emitter.flush(10.0)
    finally:
        emitter.close()
    assert emitter.snapshot_dir == tmp_path / "home" / env.SNAPSHOTS_DIR
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "coda-otel"), "snapshots", "list", "--json"],
        capture_output=True,
        text=True,
        env={"CODA_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    ids = [row["snapshot_id"] for row in json.loads(listed.stdout)]
    assert ids == ["from-defaults"]


async def test_debug_on_coda_otel_reaches_every_tool(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    debugger = coda_otel.ConversationPipelineDebugger(output_dir=tmp_path, save_logs=False)
    caches = coda_otel.CacheDebugger()
    try:
        with (
            caplog.at_level(logging.DEBUG, logger="coda_otel"),
            capture_pipeline_events(debugger) as events,
        ):
            with debugger.conversation(session_id="s1", turn=1) as conv:
                async with conv.stage("llm", {"query": "hi"}) as st:
                    st.set_output({"response": "hello"})
            caches.record_cache_access("embedding", "a key", hit=False)
    finally:
        debugger.close()
    loggers = {r.name for r in caplog.records}
    assert any(name.startswith("coda_otel.pipeline.") for name in loggers), loggers
    assert "coda_otel.cache.debugger" in loggers
    assert all(name.startswith("coda_otel.") for name in loggers)
    assert events.stage_names() == ["llm"] and events.conversations[0].status == "ok"
