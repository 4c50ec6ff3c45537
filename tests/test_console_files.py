"""``/ui/``: the console's files come from the package, with their content types and a
strict Content-Security-Policy, and nothing in them runs inline or comes from elsewhere
(docs/console.md). The page itself is tested in a browser: tests/browser/."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources

import aiohttp
import pytest

from tests.helpers import Controller

STATIC = resources.files("controller.console").joinpath("static")
EXPECTED_TYPES = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "job.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


class InlineFinder(HTMLParser):
    """Every inline script, style element, style attribute and event handler attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.sources += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if (tag == "script" and not names.get("src")) or tag == "style":
            self.inline.append(tag)
        self.inline += [k for k in names if k == "style" or k.startswith("on")]


async def get(url: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_page_and_its_files_have_their_types_and_a_strict_policy(
    controller: Controller,
) -> None:
    paths = {"/ui/": "text/html"} | {f"/ui/{n}": t for n, t in EXPECTED_TYPES.items()}
    for path, content_type in paths.items():
        status, headers, body = await get(controller.url + path)
        assert status == 200, path
        assert headers["Content-Type"].split(";")[0] == content_type, path
        assert body == STATIC.joinpath(path.removeprefix("/ui/") or "index.html").read_bytes()
        policy = dict(
            directive.strip().partition(" ")[::2]
            for directive in headers["Content-Security-Policy"].split(";")
        )
        assert policy["default-src"] == "'self'", path
        assert policy["script-src"] == policy["style-src"] == "'self'", path
        assert policy["connect-src"] == "'self'", path
        assert policy["frame-ancestors"] == "'none'", path
        assert "unsafe" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("name", ["nope.js", "..%2Fapp.py", "%2E%2E", "static", "assets.py"])
async def test_only_the_shipped_files_are_served(controller: Controller, name: str) -> None:
    status, headers, _ = await get(f"{controller.url}/ui/{name}")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")


def test_no_inline_script_or_style_and_nothing_from_another_origin() -> None:
    finder = InlineFinder()
    finder.feed(STATIC.joinpath("index.html").read_text())
    assert finder.inline == []
    assert all(s.startswith(("/ui/", "#/")) for s in finder.sources), finder.sources
    for entry in STATIC.iterdir():
        text = entry.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), entry.name
        assert "innerHTML" not in text and "eval(" not in text, entry.name
        assert "localStorage" not in text and "document.cookie" not in text, entry.name
