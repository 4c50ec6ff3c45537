"""The console's static files, shipped in the package (``static/``), read once.

The console is plain HTML, CSS and JavaScript modules: no build step, nothing fetched
from elsewhere at run time (docs/console.md says why). Every answer carries
:data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Final

CONTENT_TYPES: Final = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
    }
)
"""The types of file the console ships; any other file in ``static/`` is not served."""

CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""No inline script or style, no other origin: the page can talk only to this controller."""

SECURITY_HEADERS: Final = MappingProxyType(
    {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }
)
"""The headers of every console answer (``no-cache``: a new controller's files are seen
at once; they are revalidated, not fetched blindly)."""


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes and its ``Content-Type``."""

    body: bytes
    content_type: str


def load_assets() -> dict[str, Asset]:
    """Every servable file of ``static/`` by name (a flat folder: no subfolders, so no
    path ever reaches beyond it). Raises: OSError when the package's files cannot be read."""
    folder = resources.files(__package__ or "controller.console").joinpath("static")
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            assets[entry.name] = Asset(entry.read_bytes(), CONTENT_TYPES[suffix])
    return assets
