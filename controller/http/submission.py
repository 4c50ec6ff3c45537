"""Turning a checked exec or shell request into a job: the rollout's plan, the dry
run's answer, the job record and audit record, then publishing and collecting (or
starting the rollout), and the answer to a repeated idempotent request."""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid

import msgspec
from aiohttp import web

from controller.appkeys import (
    API_KEY,
    AUDIT_DETAILS,
    CONFIG,
    DISPATCHER,
    HOST_SLOTS,
    IDEMPOTENCY,
    JOB_METRICS,
    JOB_STORE,
    ROLLOUTS,
)
from controller.errors import NatsUnavailable, RateLimited, StorageFull
from controller.http.middleware import audit_before_action, json_response
from controller.jobs.collector import Collected
from controller.jobs.host_slots import check_blast_radius, lease_id
from controller.jobs.idempotency import entry_key
from controller.jobs.rollout_plan import check_fits, resolve_plan, worst_case_s
from controller.jobs.views import job_view
from runtime.logs import log_fields
from schemas.api import DryRunResponse, ExecRequest, ExecResponse, JobState, ShellRequest
from schemas.messages import ExecJob, JobRecord, ReplyRoute, RolloutPlan
from schemas.targets import Target, TargetKind

log = logging.getLogger("nexec.controller.submission")

ANY_LEASE = "_any"
"""The lease of a job on ``_any`` (one host, not known before it answers)."""


def rollout_plan(
    request: web.Request, body: ExecRequest | ShellRequest, hosts: int
) -> RolloutPlan | None:
    """The body's rollout resolved against ``hosts``, carrying the key's ``max_hosts``;
    None without one. The key's blast radius is checked either way.

    Raises:
        Forbidden: more hosts at once than the key's ``max_hosts``.
        BadRequest: its worst case would outlive the job's retention.
    """
    api_key = request[API_KEY]
    if body.rollout is None:
        check_blast_radius(api_key.name, api_key.max_hosts, hosts, None)
        return None
    config = request.app[CONFIG]
    delivery_timeout_s = body.delivery_timeout or config.delivery_timeout_s
    plan = resolve_plan(body.rollout, hosts, delivery_timeout_s=delivery_timeout_s)
    check_blast_radius(api_key.name, api_key.max_hosts, hosts, plan)
    if api_key.max_hosts is not None:
        plan = msgspec.structs.replace(plan, max_hosts=api_key.max_hosts)
    check_fits(
        plan,
        hosts,
        host_deadline_s=body.timeout + config.delivery_margin_s,
        slot_wait_s=config.max_hosts_wait_s,
        retention_s=config.job_retention_s,
    )
    return plan


def dry_run_answer(expected: list[str], target: Target, plan: RolloutPlan | None) -> DryRunResponse:
    """What would run: the hosts, and how many at once."""
    count = len(expected)
    if target.kind is TargetKind.ANY:
        batch_size = 1
    else:
        batch_size = count if plan is None else min(plan.batch_size, count)
    return DryRunResponse(hosts=expected, count=count, batch_size=batch_size)


async def run_job(
    request: web.Request,
    record: JobRecord,
    target: Target,
    body: ExecRequest | ShellRequest,
    *,
    wait_s: float | None,
    idempotency_key: str | None,
) -> web.Response:
    """Record, then publish and collect, or roll out; the 202 answer. When nothing
    ran, the idempotency key is released, so a retry with it runs the job.

    Raises:
        NatsUnavailable, StorageFull: nothing ran. RateLimited: the key's ``max_hosts``
            slots are taken by its other requests; nothing ran.
    """
    if log.isEnabledFor(logging.DEBUG):
        _log_submitted(record.job)
    try:
        if record.rollout is None:
            collected = await record_and_dispatch(request, record, target, body, wait_s)
        else:
            claim = (
                None if not idempotency_key else entry_key(request[API_KEY].name, idempotency_key)
            )
            collected = await record_and_roll_out(request, record, wait_s, claim)
    except (NatsUnavailable, StorageFull, RateLimited):
        if idempotency_key:
            await request.app[IDEMPOTENCY].release(request[API_KEY].name, idempotency_key)
        raise
    hosts = 1 if record.expected_hosts is None else len(record.expected_hosts)
    request.app[JOB_METRICS].job_started(shell=record.job.shell, hosts=hosts)
    response = ExecResponse(
        job_id=record.job.job_id, results=collected.results, complete=collected.complete
    )
    return json_response(response, status=202)


def _log_submitted(job: ExecJob) -> None:
    """The debug line of a job submitted: its id, key and target."""
    log.debug(
        "job %r of key %r to %r",
        job.job_id,
        job.caller,
        job.target,
        extra=log_fields(job_id=job.job_id, key_name=job.caller),
    )


async def record_job(request: web.Request, record: JobRecord) -> None:
    """Store the request's audit record and the job record (both in flight at once, both
    acknowledged). A job record stored when the audit record was not is marked so
    (``not_published``).

    Raises:
        StorageFull: the job stream has no room for the record.
        NatsUnavailable: the audit record or the job record was not stored.
    """
    store = request.app[JOB_STORE]
    written = await asyncio.gather(
        audit_before_action(request, request[AUDIT_DETAILS]),
        store.save(record),
        return_exceptions=True,
    )
    failure = next((error for error in written if isinstance(error, BaseException)), None)
    if failure is not None:  # the job record may be stored even if its write failed
        await store.mark_not_published(record)
        raise failure


async def record_and_dispatch(
    request: web.Request,
    record: JobRecord,
    target: Target,
    body: ExecRequest | ShellRequest,
    wait_s: float | None,
) -> Collected:
    """Take the key's host slots (:func:`take_slots`), record the job
    (:func:`record_job`), then publish it and collect its replies; the slots are given
    back once every host answered (else they come free at the job's deadline).

    Raises:
        RateLimited: too few of the key's host slots are free (nothing recorded).
        StorageFull: the job stream has no room for the record (nothing published).
        NatsUnavailable: the audit record, the job record or the publish failed; no
            agent got the job.
    """
    leases = await take_slots(request, record)
    try:
        collected = await dispatch(request, record, target, body, wait_s)
    except (NatsUnavailable, StorageFull):
        await give_back_slots(request, leases)
        raise
    if collected.complete:
        await give_back_slots(request, leases)
    return collected


async def dispatch(
    request: web.Request,
    record: JobRecord,
    target: Target,
    body: ExecRequest | ShellRequest,
    wait_s: float | None,
) -> Collected:
    """Record the job, publish it and collect its replies.

    Raises:
        StorageFull, NatsUnavailable: as :func:`record_and_dispatch`.
    """
    await record_job(request, record)
    job, expected_hosts = record.job, record.expected_hosts
    try:
        return await request.app[DISPATCHER].run(
            job,
            target,
            None if expected_hosts is None else frozenset(expected_hosts),
            deadline_s=job.deadline - job.created_at,
            delivery_timeout_s=body.delivery_timeout or request.app[CONFIG].delivery_timeout_s,
            return_after_s=wait_s,
        )
    except NatsUnavailable:  # raised before the job went out
        await request.app[JOB_STORE].mark_not_published(record)
        raise


async def take_slots(request: web.Request, record: JobRecord) -> list[str]:
    """Take one of the key's host slots per host the job goes to (all or none, until
    the job's deadline), when the key has ``max_hosts``; the leases taken.

    Raises:
        RateLimited: too few are free. NatsUnavailable, StorageFull: none taken.
    """
    max_hosts = request[API_KEY].max_hosts
    if max_hosts is None:
        return []
    job = record.job
    hosts = record.expected_hosts or [ANY_LEASE]
    leases = [lease_id(job.job_id, host) for host in hosts]
    taken = await request.app[HOST_SLOTS].take(
        job.caller, max_hosts, dict.fromkeys(leases, job.deadline)
    )
    if not taken:
        raise RateLimited(
            f"key {job.caller!r} has hosts running its other commands: {len(hosts)} more "
            f"would exceed its max_hosts {max_hosts}; try again when they finished, or "
            f"use a rollout (it waits for free slots)",
            headers={"Retry-After": await retry_after(request, max_hosts, len(hosts))},
        )
    return leases


async def retry_after(request: web.Request, max_hosts: int, wanted: int) -> str:
    """``Retry-After`` for a request refused for want of ``wanted`` host slots: whole
    seconds until they come free at the latest (their leases' deadlines), at least 1
    (also when the slots cannot be read)."""
    try:
        free_in_s = await request.app[HOST_SLOTS].free_in_s(
            request[API_KEY].name, max_hosts, wanted
        )
    except (NatsUnavailable, StorageFull):
        free_in_s = 0.0
    return str(max(1, math.ceil(free_in_s)))


async def give_back_slots(request: web.Request, leases: list[str]) -> None:
    """Give back the slots :func:`take_slots` took; never raises."""
    if leases:
        await request.app[HOST_SLOTS].give_back(request[API_KEY].name, leases)


async def record_and_roll_out(
    request: web.Request, record: JobRecord, wait_s: float | None, claim: str | None
) -> Collected:
    """Record the job (:func:`record_job`), start the rollout (``claim``: the bucket key
    of its ``Idempotency-Key``, kept from its end), and wait until it ended, ``wait_s``
    passed, or ``rollout_answer_s`` (then ``complete`` is False; it goes on).

    Raises:
        StorageFull, NatsUnavailable: the job or its rollout entry was not stored;
            nothing started.
    """
    await record_job(request, record)
    try:
        run = await request.app[ROLLOUTS].start(record, claim)
    except (NatsUnavailable, StorageFull):
        await request.app[JOB_STORE].mark_not_published(record)
        raise
    assert run.task is not None
    longest_s = request.app[CONFIG].rollout_answer_s
    answer_s = longest_s if wait_s is None else min(wait_s, longest_s)
    done, _ = await asyncio.wait({run.task}, timeout=answer_s)
    if done and not run.task.cancelled() and run.task.exception() is None:
        return Collected(run.task.result(), complete=True)
    return Collected(run.snapshot(), complete=False)


def new_job(
    request: web.Request,
    body: ExecRequest | ShellRequest,
    target: str,
    caller: str,
    *,
    plan: RolloutPlan | None,
    hosts: int,
) -> ExecJob:
    """The job to record (and, without a rollout, to publish). A rollout's deadline is
    its worst-case end; each host's copy gets its own when it starts."""
    now = time.time()
    host_deadline_s = body.timeout + request.app[CONFIG].delivery_margin_s
    if plan is not None:
        host_deadline_s = worst_case_s(
            plan,
            hosts,
            host_deadline_s=host_deadline_s,
            slot_wait_s=request.app[CONFIG].max_hosts_wait_s,
        )
    return ExecJob(
        job_id=str(uuid.uuid4()),
        command=body.command,
        args=body.args if isinstance(body, ExecRequest) else [],
        cwd=body.cwd,
        timeout_s=body.timeout,
        deadline=now + host_deadline_s,
        target=target,
        caller=caller,
        created_at=now,
        shell=isinstance(body, ShellRequest),
        env=body.env,
        reply_route=ReplyRoute.RECORD,
        deliver_by=now + (body.delivery_timeout or request.app[CONFIG].delivery_timeout_s),
    )


async def replay(request: web.Request, job_id: str) -> web.Response:
    """The answer to a repeated idempotent request: the earlier job as recorded now."""
    store = request.app[JOB_STORE]
    record = await store.load(job_id)
    if record is None:  # the first request has not recorded its job yet
        return json_response(ExecResponse(job_id=job_id, results=[], complete=False), 202)
    record = request.app[DISPATCHER].as_collected(record)
    view = job_view(record, await store.results(record), time.time())
    response = ExecResponse(
        job_id=job_id, results=view.results, complete=view.state is not JobState.RUNNING
    )
    return json_response(response, status=202)
