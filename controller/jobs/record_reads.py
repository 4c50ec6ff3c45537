"""Reading job records and results from JetStream: a job's record, each host's last
valid result, and the pages of the job list (:mod:`controller.jobs.records` writes them).

Every read is a JetStream direct get, counted in :attr:`JobReads.reads` so that tests
can check what a page costs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import nats.js.api
import nats.js.errors
from nats.js import JetStreamContext

from controller.errors import nats_errors
from controller.jobs.pages import NewestFirst
from runtime.logs import log_fields
from schemas.decoding import WireError, decode_job_record, decode_result_from
from schemas.messages import ExecResult, JobRecord
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.records")

MAX_ANY_RESULT_RECORDS = 16
"""Result records read for an ``_any`` job (one host answers it; a few more are a
controller's ``no_reply`` or a replayed job's): the read is bounded whatever hosts
write on their own subjects."""


@dataclass(frozen=True, slots=True)
class JobPage:
    records: list[JobRecord]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; None when this was the last."""


class JobReads:
    """Reads job records and results; every method may raise :class:`NatsUnavailable`."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self._js = js
        self._subjects = subjects
        self.reads = 0

    async def load(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is none (never made, expired, deleted).

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        raw = await self._direct_get(
            self._subjects.jobs_stream(), subject=self._subjects.job_record(job_id)
        )
        return None if raw is None else decode_stored_record(raw)

    async def results(self, record: JobRecord) -> list[ExecResult]:
        """Each host's last valid result of the job: for every expected host, the last
        record on its own subject (one read per host, however many records a host
        wrote); for ``_any``, the first :data:`MAX_ANY_RESULT_RECORDS` records.

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        job_id = record.job.job_id
        if record.expected_hosts is None:
            raws = await self._first_records(self._subjects.result_records(job_id))
            return self._valid_results(job_id, raws)
        results: list[ExecResult] = []
        for host in record.expected_hosts:
            result = await self.host_result(job_id, host)
            if result is not None:
                results.append(result)
        return results

    async def host_result(self, job_id: str, hostname: str) -> ExecResult | None:
        """The host's last valid result: its last record, or, if that one is not valid
        (only the host itself can write there), the last valid of its first records.

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        subject = self._subjects.result_record(job_id, hostname)
        last = await self._direct_get(self._subjects.results_stream(), subject=subject)
        if last is None:
            return None
        valid = self._valid_results(job_id, [last])
        if not valid:
            valid = self._valid_results(job_id, await self._first_records(subject))
        return valid[-1] if valid else None

    def _valid_results(self, job_id: str, raws: list[nats.js.api.RawStreamMsg]) -> list[ExecResult]:
        """The results in ``raws`` that name the host and job of their subject; the
        others are logged and left out."""
        results: list[ExecResult] = []
        for raw in raws:
            try:
                results.append(_decode_result(self._subjects, raw))
            except WireError as exc:
                log.warning(
                    "job %r: result record %d skipped: %s",
                    job_id,
                    raw.seq,
                    exc,
                    extra=log_fields(job_id=job_id),
                )
        return results

    async def _first_records(self, subject: str) -> list[nats.js.api.RawStreamMsg]:
        """The first :data:`MAX_ANY_RESULT_RECORDS` records on ``subject`` (a wildcard).

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        raws: list[nats.js.api.RawStreamMsg] = []
        seq = 1
        while len(raws) < MAX_ANY_RESULT_RECORDS:
            raw = await self._direct_get(
                self._subjects.results_stream(), subject=subject, from_seq=seq
            )
            if raw is None:
                return raws
            raws.append(raw)
            seq = (raw.seq or seq) + 1
        log.warning("%s: more than %d records, the rest not read", subject, MAX_ANY_RESULT_RECORDS)
        return raws

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None,
        visible: Callable[[JobRecord], bool] | None = None,
    ) -> JobPage:
        """Up to ``limit`` jobs, newest first, older than ``cursor``; with ``visible``,
        only the jobs it accepts.

        Costs one stream-info request plus one read per job returned (and one
        per deleted or invisible job skipped), at most ``PAGE_READS_PER_ITEM * limit``
        reads, however many jobs are stored.

        Raises:
            NatsUnavailable: JetStream did not answer.
            ValueError: ``cursor`` is not one this method returned.
        """
        stream = self._subjects.jobs_stream()
        with nats_errors("reading the job list"):
            walk = await NewestFirst.start(self._js, stream, cursor, limit=limit)
        self.reads += 1
        records: list[JobRecord] = []
        while len(records) < limit and walk.can_take():
            raw = await self._direct_get(stream, seq=walk.take())
            record = None if raw is None else decode_stored_record(raw)
            if record is not None and (visible is None or visible(record)):
                records.append(record)
        return JobPage(records, walk.next_cursor())

    async def _direct_get(
        self,
        stream: str,
        *,
        subject: str | None = None,
        seq: int | None = None,
        from_seq: int | None = None,
    ) -> nats.js.api.RawStreamMsg | None:
        self.reads += 1
        with nats_errors(f"reading from {stream}"):
            try:
                if from_seq is not None:
                    return await self._js.get_msg(
                        stream, seq=from_seq, subject=subject, direct=True, next=True
                    )
                return await self._js.get_msg(stream, seq=seq, subject=subject, direct=True)
            except nats.js.errors.NotFoundError:
                return None


def decode_stored_record(raw: nats.js.api.RawStreamMsg) -> JobRecord | None:
    """The job record in ``raw``, or None (logged) when it is not a valid one."""
    try:
        return decode_job_record(raw.data or b"")
    except WireError as exc:
        log.warning("job record %s skipped: %s", raw.seq, exc)
        return None


def _decode_result(subjects: Subjects, raw: nats.js.api.RawStreamMsg) -> ExecResult:
    """The result in ``raw``, which must name the job and host its subject carries.

    Raises:
        WireError: malformed, or it speaks for another host or job than its subject.
    """
    try:
        job_id, hostname = subjects.parse_host_record(raw.subject or "")
    except ValueError as exc:
        raise WireError(str(exc)) from None
    return decode_result_from(raw.data or b"", job_id=job_id, hostname=hostname)
