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
def models_dir() -> Path:
    """Where the local model is converted: once per installed model file, kept between runs
    in ``$CODA_TEST_MODELS_DIR`` (default ``~/.cache/coda-lite/test-models``) like pip's own
    cache, so a rerun of the suite does not spend half a minute converting it again (a new
    virtualenv installs a new file, converted afresh; conversions unused for a day are removed). The
    first pytest-xdist worker that needs it converts it while the others wait on a file lock.
    """
    import shutil
    import time

    from filelock import FileLock

    from tests.model_harness import converted_dir, require_local_model

    gguf = require_local_model()  # skips (laptop) or fails (CI) when the model cannot run here
    root = Path(
        os.environ.get("CODA_TEST_MODELS_DIR") or "~/.cache/coda-lite/test-models"
    ).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    stat = gguf.stat()
    folder = root / f"{stat.st_size}-{stat.st_mtime_ns}"
    with FileLock(str(root / "convert.lock")):
        for old in root.iterdir():  # another virtualenv's, unused for a day
            if old.is_dir() and old != folder and time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(exist_ok=True)
        os.utime(folder)  # in use: kept
        converted_dir(folder)
    return folder
