"""Finding every running job (for ``POST /job/cancel-all``) without reading every record.

A job can run only until its deadline, and its deadline lies at most
``MAX_DEADLINE_AHEAD_S`` after its record was first stored. So the walk reads the
job stream newest first and stops at the first record stored longer ago than that:
every older record is older still (a stream's messages are in the order they were
stored; a record rewritten later, with its verdicts, only moves nearer the start of
the walk). The walk is bounded too (:data:`MAX_RUNNING_WALK_READS`): a fleet that
stored more records than that within the window gets ``complete: false``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.js.errors
from nats.js import JetStreamContext

from controller.errors import nats_errors
from controller.jobs.pages import NewestFirst
from controller.jobs.records import JobStore
from controller.jobs.views import job_view
from schemas.api import JobState
from schemas.decoding import WireError, decode_job_record
from schemas.limits import MAX_DEADLINE_AHEAD_S
from schemas.messages import JobRecord
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.running")

MAX_RUNNING_WALK_READS = 10_000
"""Job records read at most by one walk (a few seconds of direct gets)."""


@dataclass(frozen=True, slots=True)
class RunningJobs:
    records: list[JobRecord]
    """Newest first."""
    complete: bool
    """False when the walk stopped at its read bound before the oldest record that
    could belong to a running job."""


async def running_jobs(
    js: JetStreamContext,
    subjects: Subjects,
    store: JobStore,
    *,
    visible: Callable[[JobRecord], bool],
    max_reads: int = MAX_RUNNING_WALK_READS,
    known: Callable[[JobRecord], JobRecord] = lambda record: record,
) -> RunningJobs:
    """The jobs ``visible`` accepts whose state is ``running`` now (published, deadline
    not passed, some expected host still undecided). ``known``: what the controller
    knows of a record beyond what is stored (the host that took an ``_any`` job it
    collects, :meth:`Dispatcher.as_collected`).

    Raises:
        NatsUnavailable: JetStream did not answer.
    """
    now = time.time()
    oldest = now - MAX_DEADLINE_AHEAD_S
    stream = subjects.jobs_stream()
    found: list[JobRecord] = []
    with nats_errors("reading the job records"):
        walk = await NewestFirst.start(js, stream, None, limit=1)
        walk.reads_left = max_reads
        while walk.can_take():
            try:
                raw = await js.get_msg(stream, seq=walk.take(), direct=True)
            except nats.js.errors.NotFoundError:
                continue  # rewritten later, or deleted
            if raw.time is not None and raw.time.timestamp() < oldest:
                walk.finish()
                break
            record = _decode(raw.data or b"", raw.seq)
            if record is None or not visible(record):
                continue
            if await _is_running(store, known(record), now):
                found.append(record)
    return RunningJobs(found, complete=not walk.has_more())


async def _is_running(store: JobStore, record: JobRecord, now: float) -> bool:
    """Raises: NatsUnavailable: JetStream did not answer."""
    if not record.published or record.job.deadline <= now:
        return False  # cheap: most records in the window have ended
    return job_view(record, await store.results(record), now).state is JobState.RUNNING


def _decode(data: bytes, seq: int | None) -> JobRecord | None:
    try:
        return decode_job_record(data)
    except WireError as exc:
        log.warning("job record %s skipped: %s", seq, exc)
        return None
