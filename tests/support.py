"""Test support shared by the test modules (import from here, never from ``conftest``).

Tests that need a real tool (promtool, prometheus, espeak-ng, ...) call :func:`require_tool`:
on a laptop without it they skip with the reason; in CI (``CI=true``) a missing tool fails.
"""

from __future__ import annotations

import os
import shutil

import pytest

from coda_otel.testing import free_port, serving

__all__ = ["IN_CI", "FakeClock", "free_port", "require_module", "require_tool", "serving"]

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


class FakeClock:
    """A monotonic clock a test moves by hand (``clock=`` of the watchdog, caches, stalls)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
