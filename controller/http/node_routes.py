"""``/node``: the live agents, from this controller's view of the registry bucket."""

from __future__ import annotations

from aiohttp import web

from controller.appkeys import API_KEY, REGISTRY
from controller.errors import NotFound
from controller.http.middleware import json_response
from controller.http.openapi import TARGET
from controller.http.operations import Operations
from controller.http.routes import require_target
from controller.http.validation import parse_target_text
from schemas.api import NodeList, NodeView
from schemas.targets import TargetKind

node_routes = Operations()


@node_routes.route(
    "GET", "/node", permission="node:read", summary="Every live agent", ok_body=NodeList
)
async def list_nodes(request: web.Request) -> web.Response:
    """Every live agent the key may reach, sorted by hostname. Raises: Forbidden."""
    api_key = request[API_KEY]
    nodes = [
        NodeView.from_heartbeat(hb)
        for hb in request.app[REGISTRY].live()
        if api_key.may_reach_node(hb.hostname, hb.labels)
    ]
    return json_response(NodeList(nodes=nodes))


@node_routes.route(
    "GET", "/node/{hostname}", permission="node:read",
    summary="The live agents a target addresses", ok_body=NodeList, errors=(400, 404),
    parameters=(TARGET,),
)  # fmt: skip
async def get_nodes(request: web.Request) -> web.Response:
    """The live agents a target addresses (one hostname, ``_all``, ``_any``, labels)
    that the key may reach.

    Raises:
        Forbidden (a selector outside the key's targets), BadRequest,
        NotFound (a hostname that is not live, or that the key may not reach).
    """
    api_key = request[API_KEY]
    target_text = request.match_info["hostname"]
    target = parse_target_text(target_text)
    if target.kind is not TargetKind.HOST:
        require_target(api_key, target, target_text)
    registry = request.app[REGISTRY]
    hostnames = set(registry.resolve(target))
    nodes = [
        NodeView.from_heartbeat(hb)
        for hb in registry.live()
        if hb.hostname in hostnames and api_key.may_reach_node(hb.hostname, hb.labels)
    ]
    if target.kind is TargetKind.HOST and not nodes:
        raise NotFound(f"no registered agent named {target_text!r}")
    return json_response(NodeList(nodes=nodes))
