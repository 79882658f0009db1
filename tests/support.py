"""Test support shared by the test modules (import from here, never from ``conftest``).

Tests that need a real tool (promtool, prometheus, espeak-ng, ...) call :func:`require_tool`:
on a laptop without it they skip with the reason; in CI (``CI=true``) a missing tool fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from coda_otel.testing import free_port

__all__ = ["IN_CI", "free_port", "require_module", "require_tool", "serving"]

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


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` on a free loopback port for the block; yields its base URL, cleans up after."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
