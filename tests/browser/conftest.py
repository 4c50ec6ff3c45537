"""Fixtures of the console's browser tests: headless Chromium from the distribution
(never a downloaded browser), driven by Playwright on the test's event loop, and the
folder the screenshots of each view go to (docs/console.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.browser.console import CHROMIUM_FLAGS, browser_required, chromium_path, screenshot_dir


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``NEXEC_SCREENSHOTS_DIR`` (``make console-screenshots``: docs/images), else a
    temporary folder that outlives the run (pytest's base temp)."""
    return screenshot_dir(tmp_path_factory.getbasetemp() / "console-screenshots")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium (``NEXEC_CHROMIUM``, else ``chromium`` on the PATH); the test is
    skipped without one unless ``NEXEC_BROWSER_REQUIRED=1`` (CI), where it fails."""
    path = chromium_path()
    if path is None:
        if browser_required():
            pytest.fail("no Chromium found, and NEXEC_BROWSER_REQUIRED is set")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=path, headless=True, args=list(CHROMIUM_FLAGS)
        )
        yield browser
        await browser.close()
