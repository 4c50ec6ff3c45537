"""HTTP handlers. Authentication happened in the middleware; each handler checks
its permission and target, then works."""

from __future__ import annotations

import time
import uuid

from aiohttp import web

from controller.appkeys import API_KEY, CONFIG, DISPATCHER, NATS_LINK, REGISTRY
from controller.errors import Forbidden, NatsUnavailable, NotFound
from controller.keys import ApiKey
from controller.middleware import json_response
from controller.natslink import LinkState
from controller.openapi import openapi_document
from controller.validation import parse_exec_request, parse_target_text
from schemas import ExecJob, ExecResponse, HealthResponse, TargetKind

routes = web.RouteTableDef()


def require_permission(api_key: ApiKey, permission: str) -> None:
    """Raises: Forbidden when the key lacks ``permission``."""
    if not api_key.has_permission(permission):
        raise Forbidden(f"key {api_key.name!r} lacks the permission {permission!r}")


def require_target(api_key: ApiKey, target: str) -> None:
    """Raises: Forbidden when the key may not reach ``target``."""
    if not api_key.may_target(target):
        raise Forbidden(f"key {api_key.name!r} may not reach target {target!r}")


@routes.post("/node/{hostname}/command/exec")
async def exec_command(request: web.Request) -> web.Response:
    """Run an executable (no shell) on the target's agents and return every result.

    Raises:
        Forbidden, BadRequest, NotFound, NatsUnavailable (see controller.errors).
    """
    api_key = request[API_KEY]
    require_permission(api_key, "command:exec")
    target_text = request.match_info["hostname"]
    target = parse_target_text(target_text)
    require_target(api_key, target_text)
    body = parse_exec_request(await request.read())
    if request.app[NATS_LINK].state is not LinkState.CONNECTED:
        raise NatsUnavailable("the controller is not connected to NATS")
    expected = request.app[REGISTRY].resolve(target)
    if not expected:
        raise NotFound(f"no registered agent matches target {target_text!r}")
    config = request.app[CONFIG]
    wait_s = body.timeout + config.delivery_margin_s
    now = time.time()
    job = ExecJob(
        job_id=str(uuid.uuid4()),
        command=body.command,
        args=body.args,
        cwd=body.cwd,
        timeout_s=body.timeout,
        deadline=now + wait_s,
        target=target_text,
        caller=api_key.name,
        created_at=now,
    )
    expected_set = None if target.kind is TargetKind.ANY else frozenset(expected)
    results = await request.app[DISPATCHER].run(job, target, expected_set, wait_s)
    return json_response(ExecResponse(job_id=job.job_id, results=results), status=202)


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 once NATS is connected, 503 before or while it is down. No authentication."""
    state = request.app[NATS_LINK].state
    ok = state is LinkState.CONNECTED
    body = HealthResponse(
        status="ok" if ok else "unavailable",
        nats=state.value,
        agents=len(request.app[REGISTRY].live()),
    )
    return json_response(body, status=200 if ok else 503)


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document, generated from the request and response models."""
    return web.Response(body=openapi_document(), content_type="application/json")
