"""``/job``: read, list and delete job records (from JetStream, on any controller)."""

from __future__ import annotations

import functools
import time
from typing import Any

import msgspec
from aiohttp import web

from controller.appkeys import (
    API_KEY,
    AUDIT_DETAILS,
    CONFIG,
    DISPATCHER,
    JOB_STORE,
    LIFECYCLE,
    NATS_LINK,
    ROLLOUT_STORE,
    ROLLOUTS,
)
from controller.errors import BadRequest, Conflict, NotFound
from controller.http.middleware import audit_before_action, json_response
from controller.http.openapi import CURSOR, LIMIT, REF
from controller.http.operations import Operations, parameter
from controller.http.routes import require_nats
from controller.http.validation import MAX_EVENT_ID, parse_event_id, parse_page_size
from controller.jobs.audit import AuditDetails
from controller.jobs.live import JobEvent, job_events
from controller.jobs.records import JobStore
from controller.jobs.views import job_summary, job_view
from controller.keys.store import ApiKey
from schemas.api import JobEnd, JobList, JobState, JobView
from schemas.messages import MAX_JOB_ID_LENGTH, ExecResult, JobRecord, OutputChunk, RolloutState

job_routes = Operations()

# The server looks up any job id (404 if unknown); the document allows the ids a job
# may have on the wire (schemas.messages.ExecJob).
JOB_ID = parameter(
    "path",
    "job_id",
    "A job id (the server mints UUIDs).",
    {"type": "string", "minLength": 1, "maxLength": MAX_JOB_ID_LENGTH},
)
LAST_EVENT_ID = parameter(
    "header",
    "Last-Event-ID",
    "Resume after this event id.",
    {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
)
EVENTS = (("output", OutputChunk), ("result", ExecResult), ("end", JobEnd))
"""The events of a job's output stream and the body each carries."""


def event_streams() -> dict[str, Any]:
    """``GET /job/{id}/output``'s media types: as OpenAPI 3.1 reads a stream's
    ``schema``, each one describes one event (an SSE event; an NDJSON line)."""
    event_id = {"type": "string", "pattern": "^[0-9]+$"}
    sse = [
        {"properties": {"event": {"const": kind}, "data": {
            "type": "string", "contentMediaType": "application/json",
            "contentSchema": {"$ref": REF.format(name=model.__name__)}}}}
        for kind, model in EVENTS
    ]  # fmt: skip
    ndjson = [
        {"properties": {"event": {"const": kind},
                        "data": {"$ref": REF.format(name=model.__name__)}}}
        for kind, model in EVENTS
    ]  # fmt: skip
    return {
        "text/event-stream": {"schema": {
            "type": "object", "required": ["event", "data"],
            "properties": {"id": event_id}, "oneOf": sse}},
        "application/x-ndjson": {"schema": {
            "type": "object", "required": ["event", "id", "data"],
            "properties": {"id": {"type": ["integer", "null"]}}, "oneOf": ndjson}},
    }  # fmt: skip


async def load_job(store: JobStore, job_id: str, api_key: ApiKey) -> JobRecord:
    """The job's record, if the key may see it (:meth:`ApiKey.may_see_job`).

    Raises:
        NotFound: the job has no record, or the key may not see it (the same
            answer, so a key learns nothing about jobs outside its scope).
        NatsUnavailable: JetStream did not answer.
    """
    if len(job_id) > MAX_JOB_ID_LENGTH:
        # No such job can exist, and its subject must never reach NATS: a control
        # line over the server's limit makes it close the connection.
        raise job_not_found(job_id)
    record = await store.load(job_id)
    if record is None or not api_key.may_see_job(record):
        raise job_not_found(job_id)
    return record


def job_not_found(job_id: str) -> NotFound:
    shown = job_id if len(job_id) <= MAX_JOB_ID_LENGTH else job_id[:MAX_JOB_ID_LENGTH] + "..."
    return NotFound(f"no job {shown!r} (never created, deleted, or past its retention)")


@job_routes.route(
    "GET", "/job/{job_id}", permission="job:read",
    summary="A job: request, state and every host's result", ok_body=JobView,
    errors=(404,), parameters=(JOB_ID,),
)  # fmt: skip
async def get_job(request: web.Request) -> web.Response:
    """The job's request, state and every host's result.

    Raises:
        Forbidden, NotFound, NatsUnavailable (controller.errors).
    """
    require_nats(request)
    job_id = request.match_info["job_id"]
    store = request.app[JOB_STORE]
    record = request.app[DISPATCHER].as_collected(await load_job(store, job_id, request[API_KEY]))
    rollout = await rollout_entry(request, record)
    return json_response(job_view(record, await store.results(record), time.time(), rollout))


async def rollout_entry(request: web.Request, record: JobRecord) -> RolloutState | None:
    """A rollout's entry (how far it got); None for a job without a rollout.

    Raises:
        NatsUnavailable: JetStream did not answer.
    """
    if record.rollout is None:
        return None
    stored = await request.app[ROLLOUT_STORE].read(record.job.job_id)
    return None if stored is None else stored.state


@job_routes.route(
    "GET", "/job/{job_id}/output", permission="job:read",
    summary="Server-sent events (or NDJSON): output chunks, results, end",
    ok_content=event_streams(), errors=(400, 404), parameters=(JOB_ID, LAST_EVENT_ID),
)  # fmt: skip
async def job_output(request: web.Request) -> web.StreamResponse:
    """The job's output chunks, each host's result, then an end event, as server-sent
    events (or NDJSON with ``Accept: application/x-ndjson``), live and from the start
    (or after ``Last-Event-ID``).

    Raises:
        Forbidden, BadRequest, NotFound, NatsUnavailable (controller.errors).
    """
    require_nats(request)
    job_id = request.match_info["job_id"]
    last_id = parse_event_id(request.headers.get("Last-Event-ID", "0"))
    store = request.app[JOB_STORE]
    record = request.app[DISPATCHER].as_collected(await load_job(store, job_id, request[API_KEY]))
    ndjson = "application/x-ndjson" in request.headers.get("Accept", "")
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/x-ndjson" if ndjson else "text/event-stream",
            "Cache-Control": "no-cache",
        }
    )
    await response.prepare(request)
    config = request.app[CONFIG]
    js = request.app[NATS_LINK].client.jetstream(timeout=config.jetstream_timeout_s)
    taker = functools.partial(request.app[DISPATCHER].taken_by, job_id)
    events = job_events(js, config.subjects, store, record, after=last_id, taker=taker)
    async for event in request.app[LIFECYCLE].until_draining(events):
        await response.write(format_ndjson(event) if ndjson else format_sse(event))
    await response.write_eof()
    return response


def format_sse(event: JobEvent) -> bytes:
    if event.kind == "keepalive":
        return b": keepalive\n\n"
    head = f"id: {event.event_id}\n" if event.event_id is not None else ""
    return f"{head}event: {event.kind}\ndata: ".encode() + msgspec.json.encode(event.data) + b"\n\n"


def format_ndjson(event: JobEvent) -> bytes:
    line = {"event": event.kind, "id": event.event_id, "data": event.data}
    return msgspec.json.encode(line) + b"\n"


@job_routes.route(
    "GET", "/job", permission="job:read", summary="Recent jobs, newest first",
    ok_body=JobList, errors=(400,), parameters=(LIMIT, CURSOR),
)  # fmt: skip
async def list_jobs(request: web.Request) -> web.Response:
    """Recent jobs the key may see, newest first: ``?limit=N`` (1-500, default 50) and
    ``?cursor=``. A page may be shorter than ``limit`` (see ``PAGE_READS_PER_ITEM``).

    Raises:
        Forbidden, BadRequest, NatsUnavailable (controller.errors).
    """
    api_key = request[API_KEY]
    limit = parse_page_size(request.query.get("limit"))
    require_nats(request)
    try:
        page = await request.app[JOB_STORE].page(
            limit=limit, cursor=request.query.get("cursor"), visible=api_key.may_see_job
        )
    except ValueError as exc:
        raise BadRequest(f"cursor: {exc}") from exc
    jobs = [job_summary(record) for record in page.records]
    return json_response(JobList(jobs=jobs, next_cursor=page.next_cursor))


@job_routes.route(
    "POST", "/job/{job_id}/cancel", permission="job:cancel", audited=True,
    summary="Stop the job on every agent still running it", ok_status=202, ok_body=JobView,
    errors=(404, 409), parameters=(JOB_ID,),
)  # fmt: skip
async def cancel_job(request: web.Request) -> web.Response:
    """Ask every agent still holding the job to stop it; answers 202 with the job
    as recorded now. Hosts that finished keep their results.

    Raises:
        Forbidden, NotFound, Conflict (the job has ended), NatsUnavailable.
    """
    api_key = request[API_KEY]
    job_id = request.match_info["job_id"]
    details = request[AUDIT_DETAILS] = AuditDetails(job_id=job_id)
    require_nats(request)
    store = request.app[JOB_STORE]
    record = request.app[DISPATCHER].as_collected(await load_job(store, job_id, api_key))
    view = job_view(record, await store.results(record), time.time())
    if view.state is not JobState.RUNNING:
        raise Conflict(f"job {job_id!r} has already ended ({view.state})")
    await audit_before_action(request, details)
    if record.rollout is not None:  # no further host starts
        await request.app[ROLLOUTS].cancel(job_id, api_key.name)
    await request.app[DISPATCHER].cancel(job_id, api_key.name)
    return json_response(view, status=202)


@job_routes.route(
    "DELETE", "/job/{job_id}", permission="job:cancel", audited=True,
    summary="Remove a job's record and results", ok_status=204, errors=(404,),
    parameters=(JOB_ID,),
)  # fmt: skip
async def delete_job(request: web.Request) -> web.Response:
    """Remove the job record and every result. 204, or 404 when there is no such job
    (or the key may not see it).

    Raises:
        Forbidden, NotFound, NatsUnavailable (controller.errors).
    """
    api_key = request[API_KEY]
    job_id = request.match_info["job_id"]
    details = request[AUDIT_DETAILS] = AuditDetails(job_id=job_id)
    require_nats(request)
    store = request.app[JOB_STORE]
    await load_job(store, job_id, api_key)
    await audit_before_action(request, details, status=204)
    if not await store.delete(job_id):
        raise job_not_found(job_id)
    return web.Response(status=204)
