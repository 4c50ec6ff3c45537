"""A job's events as they are recorded: output chunks, each host's result, the end.

One ordered consumer reads the results stream (results and output chunks of
the job, in recording order) from a given sequence, so a late or reconnecting
client (``Last-Event-ID``) gets everything from where it asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from controller.jobs.outcome import ANY_PLACEHOLDER_HOSTNAME, Outcome
from controller.jobs.records import JobStore
from controller.jobs.views import job_view
from schemas.api import JobEnd, JobState
from schemas.decoding import decode_chunk_from, decode_result_from
from schemas.messages import JobRecord
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.live")

KEEPALIVE_S = 15.0


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: str
    """``output``, ``result``, ``end``, or ``keepalive`` (no data)."""
    data: Any = None
    event_id: int | None = None
    """The stream sequence (resume after it with Last-Event-ID)."""


async def job_events(
    js: JetStreamContext,
    subjects: Subjects,
    store: JobStore,
    record: JobRecord,
    *,
    after: int,
    taker: Callable[[], str | None] = lambda: None,
) -> AsyncGenerator[JobEvent, None]:
    """Every event of the job recorded after stream sequence ``after``, then live ones,
    until every expected host has a result or the deadline passes; then ``end``. A job
    never published has only its ``end`` (``not_published``): no agent got it.
    ``taker``: for ``_any``, the host that took the job as the controller collecting it
    knows it now (None: unknown), asked before each event while the record names none.

    Raises:
        nats.errors.Error, TimeoutError: JetStream failed mid-stream.
        NatsUnavailable: JetStream did not answer a read of the record or results.
    """
    job = record.job
    if not record.published:
        yield JobEvent("end", JobEnd(job_id=job.job_id, state=JobState.NOT_PUBLISHED))
        return
    if record.expected_hosts is None and record.taken_by is None and after > 0:
        record = await _resumed(js, subjects, record, after)
    outcome = Outcome(record.expected_hosts, taken_by=record.taken_by)
    recorded = await store.results(record)
    # Decided as the job view shows them: a recorded result, or the controller's verdict.
    for result in job_view(record, recorded, time.time()).results:
        outcome.take(result.hostname)
        outcome.decide(result.hostname)
    subscription = await _subscribe(js, subjects, job.job_id, after)
    sent: dict[str, object] = {}  # each host's last result sent (:func:`_to_send`)
    try:
        # Replay what is recorded already, then follow live until the job is done.
        info = await subscription.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered else 0
        replaying = (info.num_pending or 0) + (delivered or 0) > 0
        while replaying or (not outcome.complete and (remaining := job.deadline - time.time()) > 0):
            try:
                message = await subscription.next_msg(
                    timeout=KEEPALIVE_S if replaying else min(KEEPALIVE_S, remaining)
                )
            except nats.errors.TimeoutError:
                yield JobEvent("keepalive")
                continue
            replaying = message.metadata.num_pending > 0
            sequence = message.metadata.sequence.stream
            event = _decode(subjects, message.subject, message.data, sequence)
            if event is not None and _to_send(event, outcome, sent, taker):
                yield event
    finally:
        await subscription.unsubscribe()
    told = sent.keys() | {result.hostname for result in recorded}
    async for event in _closing_events(store, record, told, outcome.taken_by):
        yield event


async def _resumed(
    js: JetStreamContext, subjects: Subjects, record: JobRecord, after: int
) -> JobRecord:
    """The ``_any`` job's ``record`` naming as its taker the host of event ``after``, the
    last its resuming client was sent: the host the stream it resumes followed (perhaps
    on the controller that collects the job, which knew the taker), else as it is.

    Raises:
        nats.errors.Error, TimeoutError: JetStream failed.
    """
    try:
        raw = await js.get_msg(subjects.results_stream(), seq=after, direct=True)
        job_id, hostname = subjects.parse_host_record(raw.subject or "")
    except (nats.js.errors.NotFoundError, ValueError):
        return record  # gone, or another record than a job's output or result
    if job_id != record.job.job_id or hostname == ANY_PLACEHOLDER_HOSTNAME:
        return record  # another job's, or the controller's verdict that nobody took it
    return msgspec.structs.replace(record, taken_by=hostname)


async def _closing_events(
    store: JobStore, record: JobRecord, told: set[str], taken_by: str | None
) -> AsyncIterator[JobEvent]:
    """The hosts' results not ``told`` (sent, or recorded when the stream began) as the
    job view shows them now: the controller's verdict from the record read again (it
    may have been written meanwhile, its host's own result write failing), else the
    result recorded since, else ``no_reply`` for the deadline; then ``end``. For
    ``_any``, the view's host is the one the stream followed (``taken_by``) unless the
    record names one: the record may be read before the collection writes it.

    Raises:
        NatsUnavailable: JetStream did not answer.
    """
    record = await store.load(record.job.job_id) or record
    if record.taken_by is None and taken_by is not None:
        record = msgspec.structs.replace(record, taken_by=taken_by)
    view = job_view(record, await store.results(record), time.time())
    for result in view.results:
        if result.hostname not in told:
            yield JobEvent("result", result)
    yield JobEvent("end", JobEnd(job_id=record.job.job_id, state=view.state))


def _to_send(
    event: JobEvent, outcome: Outcome, sent: dict[str, object], taker: Callable[[], str | None]
) -> bool:
    """Whether ``event`` goes out. Another host's output or result (one that learnt the
    job id, e.g. from a label it shares, or that did not take an ``_any`` job: the
    record's ``taken_by``, else the host ``taker`` names, else the first host whose
    output or result is recorded) is left out, as the job view does; so is a
    result equal to the last one sent for its host (``sent``: a rollout's results are
    written again, unchanged, at its end). A result sent decides its host."""
    if outcome.expected is None and outcome.taken_by is None and (known := taker()):
        outcome.take(known)
    if not outcome.take(host := event.data.hostname):
        return False
    if event.kind == "result":
        if sent.get(host) == event.data:
            return False
        sent[host] = event.data
        outcome.decide(host)
    return True


async def _subscribe(
    js: JetStreamContext, subjects: Subjects, job_id: str, after: int
) -> JetStreamContext.PushSubscription:
    """An ordered consumer on the job's results and output, from sequence ``after + 1``."""
    return await js.subscribe(
        subjects.result_records(job_id),
        stream=subjects.results_stream(),
        config=ConsumerConfig(
            filter_subjects=[subjects.result_records(job_id), subjects.output_records(job_id)],
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=after + 1,
        ),
        ordered_consumer=True,
    )


def _decode(subjects: Subjects, subject: str, data: bytes, sequence: int) -> JobEvent | None:
    """The event recorded on ``subject``, or None (logged) when it is not a valid one or
    speaks for another host or job than its subject carries."""
    try:
        job_id, hostname = subjects.parse_host_record(subject)
        if subjects.is_output_record(subject):
            chunk = decode_chunk_from(data, job_id=job_id, hostname=hostname)
            return JobEvent("output", chunk, sequence)
        result = decode_result_from(data, job_id=job_id, hostname=hostname)
        return JobEvent("result", result, sequence)
    except ValueError as exc:  # WireError included
        log.warning("record %d on %r skipped: %s", sequence, subject, exc)
        return None
