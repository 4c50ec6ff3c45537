"""One host of a rollout: publishing its copy of the job and collecting its answer,
or following a host another controller started (:mod:`controller.jobs.rollout`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controller.errors import NatsUnavailable
from controller.jobs.dispatch import Dispatcher
from controller.jobs.records import JobStore
from controller.jobs.verdicts import VerdictRecorder
from schemas.messages import ExecJob, ExecResult, ResultStatus


async def start_host(
    dispatcher: Dispatcher,
    verdicts: VerdictRecorder,
    copy: ExecJob,
    *,
    delivery_timeout_s: float,
    on_settled: Callable[[], None],
) -> asyncio.Future[ExecResult]:
    """Publish one host's copy (``copy.target`` the host); the future's result is its
    answer, or its ``no_reply`` verdict (recorded first; a copy that could not be
    published is one too, settled at once). ``on_settled`` is called once the
    future of a published copy is settled. Never raises."""
    try:
        return await dispatcher.start_copy(
            copy,
            deadline_s=copy.deadline - time.time(),
            delivery_timeout_s=delivery_timeout_s,
            on_settled=on_settled,
        )
    except NatsUnavailable as exc:
        result = ExecResult(
            job_id=copy.job_id, hostname=copy.target, status=ResultStatus.NO_REPLY,
            error=f"not published: {exc}",
        )  # fmt: skip
        await verdicts.record([result])
        dispatcher.counters.decided([result])
        settled: asyncio.Future[ExecResult] = asyncio.get_running_loop().create_future()
        settled.set_result(result)
        return settled


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
