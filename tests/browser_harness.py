"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, for page tests.

    with chromium() as browser:
        page = ConsolePage.open(browser, f"{base}/debug/")
        page.page.click("text=Send turn")
        assert not page.errors            # console errors and uncaught exceptions

Playwright is told where the browser is (``/usr/bin/chromium``): nothing is downloaded.
Without the browser or the Python package the test skips, and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import IN_CI, require_module, require_tool

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
#: Where page tests write their screenshots: the README's pictures (docs/console) only when
#: asked (``make screenshots`` sets it), so an ordinary run never rewrites tracked files.
SCREENSHOTS_ENV = "CODA_SCREENSHOTS_DIR"


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched Playwright ``Browser`` on the system Chromium; closed on exit."""
    require_module("playwright")
    path = shutil.which("chromium") or require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsolePage:
    """One browser context and page on the console, recording errors and request URLs."""

    context: Any
    page: Any
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, browser: Any, url: str, viewport: dict[str, int] | None = None) -> ConsolePage:
        context = browser.new_context(viewport=viewport or VIEWPORT)
        page = context.new_page()
        cp = cls(context, page)
        page.on("console", lambda m: m.type == "error" and cp.errors.append(m.text))
        page.on("pageerror", lambda exc: cp.errors.append(f"uncaught: {exc}"))
        page.on("request", lambda r: cp.urls.append(r.url))
        page.on("websocket", lambda ws: cp.urls.append(ws.url))
        page.goto(url)
        return cp

    def wait_live(self, timeout_ms: float = 15000) -> None:
        self.page.wait_for_selector("#conn[data-state=open]", timeout=timeout_ms)

    def view(self, name: str) -> None:
        self.page.click(f"#tab-{name}")
        self.page.wait_for_selector(f"#view-{name}:not([hidden])")

    def screenshot(self, name: str) -> Path:
        """The page as a PNG: in ``$CODA_SCREENSHOTS_DIR`` (for the docs), else a temp folder."""
        folder = os.environ.get(SCREENSHOTS_ENV)
        if folder:
            self.page.wait_for_timeout(400)  # a picture for the docs: one render tick more
        out = Path(folder) if folder else Path(tempfile.gettempdir()) / "coda-console-shots"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def close(self) -> None:
        self.context.close()


def playwright_expect() -> Any:
    """Playwright's ``expect``; without the package the calling module skips (fails in CI)."""
    try:
        from playwright.sync_api import expect
    except ImportError as exc:  # a laptop without the dev extra skips; CI fails
        if IN_CI:
            raise
        pytest.skip(f"playwright is not installed: {exc}", allow_module_level=True)
    return expect
