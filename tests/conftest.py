"""Shared test helpers.

Tests that need a real tool (promtool, prometheus, espeak-ng, ...) call :func:`require_tool`:
on a laptop without it they skip with the reason; in CI (``CI=true``) a missing tool fails.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Deterministic answers unless a test asks for the real model (llm.backend defaults to auto).
os.environ.setdefault("CODA_LLM_BACKEND", "echo")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_tool(name: str) -> str:
    """Path of executable ``name``; skip (laptop) or fail (CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        msg = f"{name} is not installed (Debian package; `make test` installs it as root)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def require_module(name: str) -> None:
    """Import check for an optional extra; skip on a laptop, fail in CI."""
    try:
        __import__(name)
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"python module {name} missing: {exc}")
        pytest.skip(f"python module {name} missing: {exc}")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
