"""Browser fixtures shared by the integration tests that drive Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.jupyterlab import CHROMIUM, CHROMIUM_ARGS

#: one step in JupyterLab (a click, a cell) waits at most this long by default
STEP_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium through Playwright (its own browser download does not work here)."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    pw = playwright_sync.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser):  # noqa: ANN001, ANN201
    """A page in a fresh context, sized for JupyterLab."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        yield ctx.new_page()
    finally:
        ctx.close()
