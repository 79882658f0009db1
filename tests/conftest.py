"""Suite-wide settings and fixtures. Helpers live in ``tests/support.py`` and
``coda_otel.testing``; nothing is imported from here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Deterministic answers unless a test asks for the real model (llm.backend defaults to auto).
os.environ.setdefault("CODA_LLM_BACKEND", "echo")


@pytest.fixture
def fsync_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The file descriptors coda_otel.files fsyncs during the test (fsync still runs)."""
    from coda_otel import files

    calls: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    return calls


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the local model is converted, once per test run: one folder shared by every
    pytest-xdist worker (the parent of the workers' own temp folders), converted by the first
    worker that needs it while the others wait on a file lock."""
    from filelock import FileLock

    from tests.model_harness import converted_dir

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "models"
    folder.mkdir(exist_ok=True)
    with FileLock(str(shared / "models.lock")):
        converted_dir(folder)  # skips (laptop) or fails (CI) when the model cannot run here
    return folder
