"""One host of a rollout: publishing its copy of the job and collecting its answer,
or following a host another controller started (:mod:`controller.jobs.rollout`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controller.errors import NatsUnavailable
from controller.jobs.dispatch import Dispatcher
from controller.jobs.records import JobStore
from controller.jobs.verdicts import VerdictRecorder
from schemas.messages import ExecJob, ExecResult, ResultStatus
from schemas.targets import Target, TargetKind


async def run_host(
    dispatcher: Dispatcher,
    verdicts: VerdictRecorder,
    copy: ExecJob,
    *,
    delivery_timeout_s: float,
    answered: asyncio.Event,
) -> ExecResult:
    """Publish one host's copy (``copy.target`` the host) and collect its answer;
    ``answered`` is set at its acknowledgement or its verdict. Never raises."""
    host = copy.target
    try:
        collected = await dispatcher.run(
            copy,
            Target(TargetKind.HOST, hostname=host),
            frozenset({host}),
            deadline_s=copy.deadline - time.time(),
            delivery_timeout_s=delivery_timeout_s,
            return_after_s=None,
            host_copy=True,
            answered=answered,
        )
    except NatsUnavailable as exc:
        result = ExecResult(
            job_id=copy.job_id, hostname=host, status=ResultStatus.NO_REPLY,
            error=f"not published: {exc}",
        )  # fmt: skip
        await verdicts.record([result])
        dispatcher.metrics.decided([result])
        answered.set()
        return result
    return collected.results[0]


async def follow_host(
    dispatcher: Dispatcher, job_store: JobStore, job_id: str, host: str, deadline: float
) -> ExecResult:
    """Wait for a host another controller started (never start it again)."""

    async def recorded() -> ExecResult | None:
        try:
            return await job_store.host_result(job_id, host)
        except NatsUnavailable:  # its result, if any, comes from the stream later
            return None

    collected = await dispatcher.follow(
        job_id, host, deadline_s=max(0.0, deadline - time.time()), recorded=recorded
    )
    return collected.results[0]


async def until_answered(answered: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``answered`` is set, at most ``timeout_s``."""
    waiter: asyncio.Future[Any] = asyncio.ensure_future(answered.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout_s)
    finally:
        waiter.cancel()
