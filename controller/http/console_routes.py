"""``/ui/``: the web console's static files (controller.console), public like the page
that asks for a key; everything it shows comes from the API with that key."""

from __future__ import annotations

from aiohttp import web

from controller.console.assets import SECURITY_HEADERS, load_assets
from controller.errors import NotFound
from controller.http.operations import Operations, parameter

console_routes = Operations()

ASSETS = load_assets()
"""The shipped files, read once at import (they never change while the process runs)."""
INDEX = "index.html"
ASSET_NAME = parameter(
    "path", "name", "One of the console's files.", {"type": "string", "enum": sorted(ASSETS)}
)
PAGE_CONTENT = {"text/html": {"schema": {"type": "string"}}}
ASSET_CONTENT = {
    media: {"schema": {"type": "string"}}
    for media in sorted({asset.content_type.partition(";")[0] for asset in ASSETS.values()})
}


def asset_response(name: str) -> web.Response:
    """The file ``name`` (its security headers come from :func:`console_headers`).
    Raises: NotFound."""
    asset = ASSETS.get(name)
    if asset is None:
        raise NotFound(f"the console has no file {name!r}")
    return web.Response(body=asset.body, headers={"Content-Type": asset.content_type})


async def console_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """The console's security headers on every answer under ``/ui`` (an app's
    ``on_response_prepare``): its files, and its 404s and 405s as well, which are
    pages of the console's origin too."""
    if request.path == "/ui" or request.path.startswith("/ui/"):
        response.headers.update(SECURITY_HEADERS)


@console_routes.route(
    "GET", "/ui/", public=True, summary="The web console (docs/console.md)",
    ok_content=PAGE_CONTENT,
)  # fmt: skip
async def console_page(request: web.Request) -> web.Response:
    """The console's page. No authentication: it asks for a key, kept in the tab."""
    return asset_response(INDEX)


@console_routes.route(
    "GET", "/ui/{name}", public=True, summary="One of the web console's static files",
    ok_content=ASSET_CONTENT, errors=(404,), parameters=(ASSET_NAME,),
)  # fmt: skip
async def console_asset(request: web.Request) -> web.Response:
    """A script, style sheet or image of the console. Raises: NotFound."""
    return asset_response(request.match_info["name"])
