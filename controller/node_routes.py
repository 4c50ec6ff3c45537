"""``/node``: the live agents, from this controller's view of the registry bucket."""

from __future__ import annotations

from aiohttp import web

from controller.appkeys import API_KEY, REGISTRY
from controller.errors import NotFound
from controller.middleware import json_response
from controller.routes import require_permission, require_target
from controller.validation import parse_target_text
from schemas import TargetKind
from schemas.api import NodeList, NodeView

node_routes = web.RouteTableDef()


@node_routes.get("/node")
async def list_nodes(request: web.Request) -> web.Response:
    """Every live agent, sorted by hostname. Raises: Forbidden."""
    require_permission(request[API_KEY], "node:read")
    nodes = [NodeView.from_heartbeat(hb) for hb in request.app[REGISTRY].live()]
    return json_response(NodeList(nodes=nodes))


@node_routes.get("/node/{hostname}")
async def get_nodes(request: web.Request) -> web.Response:
    """The live agents a target addresses (one hostname, ``_all``, ``_any``, labels).

    Raises:
        Forbidden, BadRequest, NotFound (a hostname that is not live).
    """
    api_key = request[API_KEY]
    require_permission(api_key, "node:read")
    target_text = request.match_info["hostname"]
    target = parse_target_text(target_text)
    require_target(api_key, target, target_text)
    registry = request.app[REGISTRY]
    hostnames = set(registry.resolve(target))
    if target.kind is TargetKind.HOST and not hostnames:
        raise NotFound(f"no registered agent named {target_text!r}")
    nodes = [NodeView.from_heartbeat(hb) for hb in registry.live() if hb.hostname in hostnames]
    return json_response(NodeList(nodes=nodes))
