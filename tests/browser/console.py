"""Helpers of the console's browser tests: where Chromium is, how it is started, signing
in, and what the page requested."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    expect,
)

from tests.helpers import Controller

CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
"""Debian's Chromium as root, offline: without the background-networking flags it tries
to reach the internet, is refused, and is slow."""
VIEWPORT = {"width": 1280, "height": 800}
LOAD_FAILED = "Failed to load resource"
"""Chromium's console line for every answer >= 400 and every refused connection: the
page shows those itself (tests check what it shows)."""


def chromium_path() -> str | None:
    return os.environ.get("NEXEC_CHROMIUM") or shutil.which("chromium")


def browser_required() -> bool:
    return os.environ.get("NEXEC_BROWSER_REQUIRED", "") not in ("", "0")


def screenshot_dir(default: Path) -> Path:
    folder = Path(os.environ.get("NEXEC_SCREENSHOTS_DIR") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Console:
    """One browser tab on a controller's console, with every URL it requested."""

    controller: Controller
    context: BrowserContext
    page: Page
    requested: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Uncaught errors and unhandled rejections of the page, and its console errors
    (but Chromium's own line for each failed or refused request)."""

    @classmethod
    async def open(cls, browser: Browser, controller: Controller, query: str = "") -> Console:
        """A new tab on ``/ui/`` (plus ``query``, e.g. ``?refresh_s=0.2``)."""
        context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        page = await context.new_page()
        console = cls(controller, context, page)

        def record(request: Request) -> None:
            console.requested.append(request.url)

        def problem(message: ConsoleMessage) -> None:
            if message.type == "error" and not message.text.startswith(LOAD_FAILED):
                console.problems.append(message.text)

        page.on("request", record)
        page.on("pageerror", lambda error: console.problems.append(repr(error)))
        page.on("console", problem)
        await page.goto(controller.url + "/ui/" + query)
        return console

    async def sign_in(self, key: str) -> None:
        await self.page.get_by_label("API key").fill(key)
        await self.page.get_by_label("API key").press("Enter")

    async def signed_in(self, key: str) -> None:
        """Sign in and wait for the first view."""
        await self.sign_in(key)
        await expect(self.page.get_by_role("button", name="Sign out")).to_be_visible()

    async def view(self, name: str) -> None:
        await self.page.get_by_role("link", name=name, exact=True).click()
        await expect(self.page.get_by_role("heading", level=1)).to_have_text(name)

    async def screenshot(self, folder: Path, name: str) -> None:
        await self.page.screenshot(path=folder / f"console-{name}.png", full_page=True)

    async def unlabelled_fields(self) -> list[str]:
        """The form fields shown without a label (by id)."""
        found: list[str] = await self.page.evaluate(
            "[...document.querySelectorAll('input, select, textarea')]"
            ".filter((e) => e.offsetParent !== null && e.labels.length === 0)"
            ".map((e) => e.id || e.outerHTML)"
        )
        return found

    async def stored_outside_the_tab(self) -> list[str]:
        """What of the page's state could outlive the tab: localStorage, cookies."""
        local = await self.page.evaluate("JSON.stringify(Object.entries(localStorage))")
        cookies = [f"{c.get('name')}={c.get('value')}" for c in await self.context.cookies()]
        return [local, *cookies]
