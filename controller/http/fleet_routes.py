"""Incident controls: pause and resume the whole fleet, cancel every running job.

Pause and resume act on the whole fleet, so they need a key without target patterns;
cancel-all cancels the running jobs the key may see. All three are audited before
they act (docs/operations.md, "What happens when… someone pauses the fleet").
"""

from __future__ import annotations

from aiohttp import web

from controller.appkeys import (
    API_KEY,
    CONFIG,
    DISPATCHER,
    FLEET_PAUSE,
    JOB_STORE,
    NATS_LINK,
    ROLLOUT_STORE,
    ROLLOUTS,
)
from controller.errors import Forbidden
from controller.http.middleware import audit_before_action, json_response
from controller.http.operations import Operations
from controller.http.routes import require_nats
from controller.jobs.audit import AuditDetails
from controller.jobs.running import running_jobs
from controller.keys.store import ApiKey
from schemas.api import CancelAllResponse, FleetStatus

fleet_routes = Operations()


def require_whole_fleet(api_key: ApiKey, action: str) -> None:
    """Raises: Forbidden when the key is limited to target patterns."""
    if api_key.targets:
        raise Forbidden(
            f"key {api_key.name!r} may reach only some targets; {action} needs a key "
            "without target patterns"
        )


@fleet_routes.route(
    "GET", "/fleet", permission="node:read",
    summary="The fleet's state: whether it is paused, by whom, since when",
    ok_body=FleetStatus,
)  # fmt: skip
async def fleet_status(request: web.Request) -> web.Response:
    """Whether the fleet is paused, as this controller follows it.

    Raises: Forbidden (controller.errors), from the middleware only."""
    return json_response(FleetStatus(paused=request.app[FLEET_PAUSE].paused))


@fleet_routes.route(
    "POST", "/fleet/pause", permission="fleet:admin", audited=True,
    summary="Pause the fleet: every controller refuses exec and shell (503) until resumed",
    ok_body=FleetStatus,
)  # fmt: skip
async def pause_fleet(request: web.Request) -> web.Response:
    """Pause the fleet (a fleet paused already stays paused by whoever paused it).

    Raises:
        Forbidden: the key has target patterns. NatsUnavailable, StorageFull: not stored.
    """
    api_key = request[API_KEY]
    require_whole_fleet(api_key, "pausing the fleet")
    require_nats(request)
    await audit_before_action(request, AuditDetails(target="_all"), status=200)
    paused = await request.app[FLEET_PAUSE].pause(api_key.name)
    return json_response(FleetStatus(paused=paused))


@fleet_routes.route(
    "POST", "/fleet/resume", permission="fleet:admin", audited=True,
    summary="Resume the fleet: exec and shell are taken again", ok_body=FleetStatus,
)  # fmt: skip
async def resume_fleet(request: web.Request) -> web.Response:
    """Let the fleet run again.

    Raises:
        Forbidden: the key has target patterns. NatsUnavailable, StorageFull: not stored.
    """
    api_key = request[API_KEY]
    require_whole_fleet(api_key, "resuming the fleet")
    require_nats(request)
    await audit_before_action(request, AuditDetails(target="_all"), status=200)
    await request.app[FLEET_PAUSE].resume(api_key.name)
    return json_response(FleetStatus(paused=None))


@fleet_routes.route(
    "POST", "/job/cancel-all", permission="fleet:admin", audited=True,
    summary="Cancel every running job the key may see", ok_status=202,
    ok_body=CancelAllResponse,
)  # fmt: skip
async def cancel_all(request: web.Request) -> web.Response:
    """Send a cancel for every running job the key may see, as ``POST /job/{id}/cancel``
    does for one; answers 202 with their ids.

    Raises:
        Forbidden (from the middleware), NatsUnavailable.
    """
    api_key = request[API_KEY]
    require_nats(request)
    config = request.app[CONFIG]
    js = request.app[NATS_LINK].client.jetstream(timeout=config.jetstream_timeout_s)
    found = await running_jobs(
        js,
        config.subjects,
        request.app[JOB_STORE],
        visible=api_key.may_see_job,
        known=request.app[DISPATCHER].as_collected,
    )
    job_ids = [record.job.job_id for record in found.records]
    rollouts = await running_rollouts(request, api_key)
    job_ids += [job_id for job_id in rollouts if job_id not in job_ids]
    await audit_before_action(request, AuditDetails(target="_all"))
    dispatcher = request.app[DISPATCHER]
    for job_id in job_ids:
        if job_id in rollouts:  # no further host starts
            await request.app[ROLLOUTS].cancel(job_id, api_key.name)
        await dispatcher.cancel(job_id, api_key.name)
    return json_response(CancelAllResponse(job_ids=job_ids, complete=found.complete), 202)


async def running_rollouts(request: web.Request, api_key: ApiKey) -> list[str]:
    """The rollouts not ended that ``api_key`` may see, however old (their entries).

    Raises:
        NatsUnavailable: JetStream did not answer.
    """
    store, job_store = request.app[ROLLOUT_STORE], request.app[JOB_STORE]
    found = []
    for job_id in await store.job_ids():
        stored = await store.read(job_id)
        if stored is None or stored.state.ended:
            continue
        record = await job_store.load(job_id)
        if record is not None and api_key.may_see_job(record):
            found.append(job_id)
    return found
