"""The exec endpoint, health and the OpenAPI document.

Authentication and each operation's permission are checked in the middleware, from
the declarations here (controller.http.operations); each handler checks its target, then
works.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from controller.appkeys import (
    API_KEY,
    AUDIT_DETAILS,
    FLEET_PAUSE,
    IDEMPOTENCY,
    JOB_STORE,
    LIFECYCLE,
    NATS_LINK,
    OPENAPI_DOCUMENT,
    REGISTRY,
    REGISTRY_FEED,
)
from controller.errors import BadRequest, Forbidden, NatsUnavailable, NotFound
from controller.http.body import read_json_body
from controller.http.middleware import json_response
from controller.http.openapi import TARGET
from controller.http.operations import Operations, parameter
from controller.http.submission import dry_run_answer, new_job, replay, rollout_plan, run_job
from controller.http.validation import (
    parse_exec_request,
    parse_shell_request,
    parse_target_text,
    whole_number,
)
from controller.jobs.audit import AuditDetails
from controller.keys.store import ApiKey
from controller.natslink import LinkState
from schemas.api import (
    DryRunResponse,
    ExecRequest,
    ExecResponse,
    HealthResponse,
    ShellRequest,
)
from schemas.limits import MAX_TIMEOUT_S
from schemas.messages import ExecJob, JobRecord
from schemas.targets import Target, TargetKind

routes = Operations()

WAIT = parameter(
    "query",
    "wait",
    f"true (default: until every host answered), false, or whole seconds 0-{MAX_TIMEOUT_S}.",
    {
        "anyOf": [
            {"type": "string", "enum": ["true", "false"]},
            {"type": "integer", "minimum": 0, "maximum": MAX_TIMEOUT_S},
        ]
    },
)
DRY_RUN = parameter(
    "query",
    "dry_run",
    "true: run every check and answer 200 with the hosts the target resolves to; "
    "nothing is recorded or published. false (default): run it.",
    {"type": "string", "enum": ["true", "false"]},
)
DRY_RUN_ANSWER = (200, DryRunResponse, "Dry run: every check passed; nothing ran.")
IDEMPOTENCY_KEY = parameter(
    "header",
    "Idempotency-Key",
    "Repeat a request without running it twice: the same key and request return the first job.",
    {"type": "string"},
)
LIVE_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "alive"}},
        }
    }
}
"""``GET /livez``'s body: ``{"status": "alive"}``."""
OPENAPI_CONTENT = {"application/json": {"schema": {"type": "object"}}}


def require_target(api_key: ApiKey, target: Target, target_text: str) -> None:
    """Raises: Forbidden when the key may not reach ``target``."""
    if not api_key.may_target(target):
        raise Forbidden(f"key {api_key.name!r} may not reach target {target_text!r}")


def require_nats(request: web.Request) -> None:
    """Raises: NatsUnavailable unless the controller is connected to NATS."""
    if request.app[NATS_LINK].state is not LinkState.CONNECTED:
        raise NatsUnavailable("the controller is not connected to NATS")


def parse_wait(query_value: str | None) -> float | None:
    """``?wait``: absent or ``true`` = until done (None); ``false`` = 0; else seconds.

    Raises:
        BadRequest: not ``true``, ``false`` or an integer from 0 to 300.
    """
    if query_value is None or query_value == "true":
        return None
    if query_value == "false":
        return 0.0
    seconds = whole_number(query_value)
    if seconds is not None and seconds <= MAX_TIMEOUT_S:
        return float(seconds)
    raise BadRequest(f"wait: expected true, false or whole seconds 0-{MAX_TIMEOUT_S}")


def parse_dry_run(query_value: str | None) -> bool:
    """``?dry_run``: absent or ``false`` = run it; ``true`` = only check.

    Raises:
        BadRequest: neither ``true`` nor ``false``.
    """
    if query_value is None or query_value == "false":
        return False
    if query_value == "true":
        return True
    raise BadRequest("dry_run: expected true or false")


@routes.route(
    "POST", "/node/{hostname}/command/exec", permission="command:exec", audited=True,
    summary="Run an executable, without a shell", request_body=ExecRequest,
    ok_status=202, ok_body=ExecResponse, other_ok=(DRY_RUN_ANSWER,), errors=(404, 409),
    parameters=(TARGET, WAIT, DRY_RUN, IDEMPOTENCY_KEY),
)  # fmt: skip
async def exec_command(request: web.Request) -> web.Response:
    """Run an executable (no shell) on the target's agents and return their results.

    Raises:
        Forbidden, BadRequest, NotFound, Conflict, NatsUnavailable, and the body's errors
        (controller.http.body.read_json_body).
    """
    target_text, target = allowed_target(request)
    dry_run = parse_dry_run(request.query.get("dry_run"))
    body = parse_exec_request(await read_json_body(request))
    return await submit(request, target_text, target, body, dry_run=dry_run)


@routes.route(
    "POST", "/node/{hostname}/command/shell", permission="command:shell", audited=True,
    summary="Run one command line with /bin/sh -c", request_body=ShellRequest,
    ok_status=202, ok_body=ExecResponse, other_ok=(DRY_RUN_ANSWER,), errors=(404, 409),
    parameters=(TARGET, WAIT, DRY_RUN, IDEMPOTENCY_KEY),
)  # fmt: skip
async def shell_command(request: web.Request) -> web.Response:
    """Run one command line with ``/bin/sh -c`` (permission ``command:shell``; each agent
    runs it only if its policy allows shell).

    Raises:
        Forbidden, BadRequest, NotFound, Conflict, NatsUnavailable, and the body's errors
        (controller.http.body.read_json_body).
    """
    target_text, target = allowed_target(request)
    dry_run = parse_dry_run(request.query.get("dry_run"))
    body = parse_shell_request(await read_json_body(request))
    return await submit(request, target_text, target, body, dry_run=dry_run)


def allowed_target(request: web.Request) -> tuple[str, Target]:
    """The path's target, parsed and checked against the key's targets.

    Raises:
        BadRequest: malformed target. Forbidden: the key may not reach it.
    """
    target_text = request.match_info["hostname"]
    target = parse_target_text(target_text)
    require_target(request[API_KEY], target, target_text)
    return target_text, target


async def submit(
    request: web.Request,
    target_text: str,
    target: Target,
    body: ExecRequest | ShellRequest,
    *,
    dry_run: bool,
) -> web.Response:
    """Resolve the target; for a dry run, answer what would run; else honour
    ``Idempotency-Key``, record, publish and collect.

    Raises:
        BadRequest, NotFound, Conflict, FleetPaused, NatsUnavailable, StorageFull
        (controller.errors).
    """
    details = audit_details(target_text, body, dry_run=dry_run)
    request[AUDIT_DETAILS] = details
    wait_s = parse_wait(request.query.get("wait"))
    if body.rollout is not None and target.kind is TargetKind.ANY:
        raise BadRequest("rollout: not with _any (one host runs it)")
    expected = resolve(request, target, target_text)
    plan = rollout_plan(request, body, len(expected))
    if dry_run:  # audited after the answer, as every request that does not act
        return json_response(dry_run_answer(expected, target, plan))
    job = new_job(request, body, target_text, request[API_KEY].name, plan=plan, hosts=len(expected))
    details.job_id = job.job_id
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key:
        owner = await idempotency_owner(request, idempotency_key, job, target_text, body)
        if owner != job.job_id:
            return await replay(request, owner)
    expected_hosts = None if target.kind is TargetKind.ANY else expected
    record = JobRecord(job=job, expected_hosts=expected_hosts, rollout=plan)
    return await run_job(
        request, record, target, body, wait_s=wait_s, idempotency_key=idempotency_key
    )


def audit_details(
    target_text: str, body: ExecRequest | ShellRequest, *, dry_run: bool
) -> AuditDetails:
    """What the audit record of an exec or shell request names (its job id comes later)."""
    return AuditDetails(
        target=target_text,
        command=body.command,
        args=tuple(body.args) if isinstance(body, ExecRequest) else (),
        shell=isinstance(body, ShellRequest),
        dry_run=dry_run,
    )


async def idempotency_owner(
    request: web.Request,
    idempotency_key: str,
    job: ExecJob,
    target_text: str,
    body: ExecRequest | ShellRequest,
) -> str:
    """The id of the job that holds the key's ``Idempotency-Key``: ``job``'s own when
    the key is new for this request (target, shell or not, body).

    Raises:
        Conflict: the key was claimed by a different request. NatsUnavailable.
    """
    request_digest = msgspec.json.encode([target_text, job.shell, body])
    return await request.app[IDEMPOTENCY].claim(
        request[API_KEY].name, idempotency_key, request_digest, job.job_id
    )


def resolve(request: web.Request, target: Target, target_text: str) -> list[str]:
    """The live hosts ``target`` resolves to, sorted (for ``_any``: every one that
    could take it), once the fleet runs and NATS is connected.

    Raises:
        FleetPaused: the fleet is paused. NatsUnavailable: NATS is not connected.
        NotFound: no live agent matches.
    """
    request.app[FLEET_PAUSE].refuse_if_paused()
    require_nats(request)
    expected = request.app[REGISTRY].resolve(target)
    if not expected:
        raise NotFound(f"no registered agent matches target {target_text!r}")
    return expected


@routes.route(
    "GET", "/healthz", public=True, unlimited=True,
    summary="Readiness: 200 while requests can succeed, else 503 with reasons",
    ok_body=HealthResponse, errors=(503,), error_body=HealthResponse,
)  # fmt: skip
async def healthz(request: web.Request) -> web.Response:
    """Readiness: 200 while requests can succeed, else 503 with every reason they cannot
    (:func:`health_reasons`). No live agent is not a reason: ``agents`` says 0.
    No authentication."""
    reasons = health_reasons(request.app)
    body = HealthResponse(
        status=reasons[0] if reasons else "ok",
        nats=request.app[NATS_LINK].state.value,
        agents=len(request.app[REGISTRY].live()),
        reasons=reasons,
        paused=request.app[FLEET_PAUSE].paused,
    )
    return json_response(body, status=503 if reasons else 200)


def health_reasons(app: web.Application) -> list[str]:
    """Why requests cannot succeed now: draining, NATS not connected, JetStream not
    answering the probe (controller.natslink), the job stream refusing writes for want
    of room, the registry watch stopped. Empty when ready."""
    link = app[NATS_LINK]
    reasons = []
    if app[LIFECYCLE].draining:
        reasons.append("shutting down")
    if link.state is not LinkState.CONNECTED:
        reasons.append(f"NATS not connected ({link.state.value})")
        if link.setup_error is not None:
            reasons.append(f"NATS setup failed, retrying: {link.setup_error}")
    elif link.probe_failure is not None:
        reasons.append(link.probe_failure)
    if app[JOB_STORE].storage_full is not None:
        reasons.append(f"storage full: {app[JOB_STORE].storage_full}")
    if link.state is LinkState.CONNECTED and not app[REGISTRY_FEED].following:
        reasons.append("registry not followed")
    return reasons


@routes.route(
    "GET", "/livez", public=True, unlimited=True,
    summary="Liveness: 200 while the process runs", ok_content=LIVE_CONTENT,
)  # fmt: skip
async def livez(request: web.Request) -> web.Response:
    """Liveness: 200 while the process runs and serves HTTP, whatever NATS does.
    No authentication."""
    return web.json_response({"status": "alive"})


@routes.route(
    "GET", "/openapi.json", public=True, summary="This OpenAPI document",
    ok_content=OPENAPI_CONTENT, errors=(503,),
)  # fmt: skip
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document, generated from the route declarations and the request
    and response models (controller.http.openapi)."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")
