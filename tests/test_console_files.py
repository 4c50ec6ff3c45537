"""``/ui/``: the console's files come from the package, with their content types and a
strict Content-Security-Policy, and nothing in them runs inline or comes from elsewhere
(docs/console.md). The page itself is tested in a browser: tests/browser/."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from importlib import resources

import aiohttp
import pytest

from controller.console.assets import SECURITY_HEADERS
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
        assert not re.search(r"\bconsole\.\w+\(", text), entry.name  # no log holds a key
        keyed = entry.name.endswith(".js") and "sessionStorage" in text
        assert not keyed or entry.name == "api.js", entry.name  # the key in one module


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/ui/nope.js"), ("GET", "/ui/a/b"), ("GET", "/ui"), ("POST", "/ui/"),
     ("GET", "/ui/%3Cimg%20src=x%3E")],
)  # fmt: skip
async def test_every_answer_under_ui_has_the_security_headers(
    controller: Controller, method: str, path: str
) -> None:
    """A 404 or 405 under /ui/ is a page of the console's origin too: the same policy."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, controller.url + path, allow_redirects=False) as response,
    ):
        assert response.status >= 400, path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)
        assert response.headers["Content-Type"].startswith("application/json")


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of ``#rgb`` or ``#rrggbb``."""
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = [int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    light, dark = sorted((relative_luminance(one), relative_luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def stylesheet_colour(css: str, value: str) -> str:
    """``#hex`` as it is, ``var(--name)`` resolved from the style sheet's ``:root``."""
    found = re.fullmatch(r"var\((--[\w-]+)\)", value)
    if found is None:
        return value
    declared = re.search(rf"{found[1]}:\s*(#[0-9a-fA-F]+)", css)
    assert declared is not None, f"{found[1]} is not declared"
    return declared[1]


def test_the_stylesheets_colours_are_readable() -> None:
    """WCAG AA: 4.5:1 for text on the backgrounds it is drawn on, 3:1 for the focus
    ring against what surrounds it (SC 1.4.11: the focused element must be seen)."""
    css = STATIC.joinpath("console.css").read_text()
    colour = {name: stylesheet_colour(css, f"var(--{name})") for name in
              ("fg", "muted", "bg", "panel", "accent", "bad", "ok", "warn")}  # fmt: skip
    text_on = {
        "bg": ["fg", "muted", "accent", "bad", "ok", "warn"],
        "panel": ["fg", "muted", "accent", "bad", "ok", "warn"],
        "accent": ["bg"],
    }
    for background, texts in text_on.items():
        for text in texts:
            ratio = contrast(colour[text], colour[background])
            assert ratio >= 4.5, (text, background, ratio)
    alert = re.search(r"\.error \{ background: (#\w+); color: var\(--bad\)", css)
    assert alert is not None and contrast(alert[1], colour["bad"]) >= 4.5
    rings = re.findall(r"([^}]*focus-visible[^{]*)\{ outline: \d+px solid ([^;]+);", css)
    assert rings
    for selectors, ring in rings:
        for selector in selectors.split(","):
            around = ["accent"] if selector.strip().startswith(".bar") else ["bg", "panel"]
            for background in around:
                ratio = contrast(stylesheet_colour(css, ring), colour[background])
                assert ratio >= 3, (selector.strip(), ring, background, ratio)
