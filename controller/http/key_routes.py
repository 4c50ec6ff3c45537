"""``GET /whoami``: what the presented key is and may do (for the web console, and for
any client that hides what its key may not do)."""

from __future__ import annotations

from aiohttp import web

from controller.appkeys import API_KEY
from controller.http.middleware import json_response
from controller.http.operations import Operations
from schemas.api import WhoAmI

key_routes = Operations()


@key_routes.route(
    "GET", "/whoami", any_key=True,
    summary="The presented key: name, permissions, target patterns, max_hosts", ok_body=WhoAmI,
)  # fmt: skip
async def whoami(request: web.Request) -> web.Response:
    """The authenticated key's name, sorted permissions, target patterns, ``max_hosts``
    and expiry; any valid key may ask. Raises: Unauthorized, RateLimited (middleware)."""
    api_key = request[API_KEY]
    body = WhoAmI(
        name=api_key.name,
        permissions=sorted(api_key.permissions),
        targets=list(api_key.targets),
        max_hosts=api_key.max_hosts,
        expires_at=api_key.expires_at,
    )
    return json_response(body)
