"""Job records in JetStream: the request in one stream, each host's result in another.

A controller writes the job record before it publishes the job; agents write
their own results, so a result that comes after the HTTP answer, or while no
controller runs, is still recorded. Every read here is a JetStream direct get,
counted in :attr:`JobStore.reads` so that tests can check what a page costs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from controller.errors import NatsUnavailable, StorageFull, nats_errors
from controller.jobs.pages import NewestFirst
from runtime.jetstream import ensure_stream, is_wrong_last_sequence, record_stream_configs
from runtime.logs import log_fields
from runtime.streamwriter import StreamWriter
from schemas.decoding import WireError, decode_job_record, decode_result_from
from schemas.messages import ExecResult, JobRecord, ResultStatus, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.records")


MAX_ANY_RESULT_RECORDS = 16
"""Result records read for an ``_any`` job (one host answers it; a few more are a
controller's ``no_reply`` or a replayed job's): the read is bounded whatever hosts
write on their own subjects."""

REWRITE_TRIES = 3
"""Reads and conditional writes of a job record that another writer keeps changing."""

CONTROLLER_DECIDED = (ResultStatus.NO_REPLY, ResultStatus.SKIPPED)
"""The statuses only a controller writes (a host may still record its own result
after its ``no_reply``)."""
KEEP_AT_ONCE = 32
"""Records :meth:`JobStore.keep_from_now` writes again at once."""


@dataclass(frozen=True, slots=True)
class JobPage:
    records: list[JobRecord]
    next_cursor: str | None
    """Pass as ``cursor`` for the next (older) page; None when this was the last."""


class JobStore:
    """Reads and writes job records; every method may raise :class:`NatsUnavailable`."""

    def __init__(self, js: JetStreamContext, writer: StreamWriter, subjects: Subjects) -> None:
        """``writer`` writes the records (opened once connected); ``js`` does the rest."""
        self._js = js
        self._writer = writer
        self._subjects = subjects
        self.reads = 0
        self.storage_full: str | None = None
        """Why the last job record write was refused for want of room; None once one
        was stored again (``/healthz`` reports it)."""

    async def ensure_streams(
        self, *, retention_s: float, replicas: int, jobs_max_bytes: int, results_max_bytes: int
    ) -> None:
        """Create the record streams, or bring an existing one to this configuration.

        Raises:
            NatsUnavailable: JetStream is unavailable or refused the configuration.
        """
        for config in record_stream_configs(
            self._subjects,
            retention_s=retention_s,
            replicas=replicas,
            jobs_max_bytes=jobs_max_bytes,
            results_max_bytes=results_max_bytes,
        ):
            with nats_errors(f"setting up stream {config.name}"):
                await ensure_stream(self._js, config)

    async def save(self, record: JobRecord) -> None:
        """Raises: StorageFull when the job stream (or JetStream's storage) has no room;
        NatsUnavailable when JetStream does not confirm the write otherwise."""
        try:
            with nats_errors(
                "recording the job", when_full="the job was not recorded, nothing ran"
            ):
                await self._writer.write(
                    self._subjects.job_record(record.job.job_id), encode(record)
                )
        except StorageFull as exc:
            cause = exc.__cause__
            self.storage_full = (
                f"stream {self._subjects.jobs_stream()} refused a job record: {cause}"
            )
            raise
        self.storage_full = None

    async def mark_not_published(self, record: JobRecord) -> None:
        """Rewrite the record as never published (its job was not sent), so that no view
        shows a job that never ran as ``failed``. Called whenever a save may have stored
        the record (even one that timed out) but the job was not published. A failure
        is logged: nothing more can be done then (docs/jobs.md)."""
        marked = msgspec.structs.replace(record, published=False)
        try:
            await self._writer.write(self._subjects.job_record(record.job.job_id), encode(marked))
        except (nats.errors.Error, TimeoutError) as exc:
            log.error(
                "job %r was not published, and marking its record so failed: %s",
                record.job.job_id,
                exc or type(exc).__name__,
                extra=log_fields(job_id=record.job.job_id),
            )

    async def record_no_replies(self, job_id: str, results: list[ExecResult]) -> None:
        """Record the controller's ``no_reply`` verdicts on the job's hosts: in the job
        record (``no_replies``, what the job view shows next to any result recorded
        later), then on each host's result subject where nothing is recorded yet (so
        live output sees the host decided). A job record deleted or expired meanwhile
        is left so, its results unwritten. A record too large to take them (NATS's
        max_payload) keeps none: the hosts' result subjects hold them (docs/jobs.md).

        Raises:
            NatsUnavailable: JetStream did not take the job record's verdicts.
        """
        if not await self._add_no_replies(job_id, {r.hostname: r.error or "" for r in results}):
            return
        await self.record_where_absent(job_id, results)

    async def record_where_absent(self, job_id: str, results: list[ExecResult]) -> None:
        """Write results the controller decided (``no_reply``, ``skipped``) on each
        host's result subject where nothing is recorded yet; a failed write is logged."""
        for result in results:
            try:
                await self._writer.write(
                    self._subjects.result_record(result.job_id, result.hostname),
                    encode(result),
                    headers={"Nats-Expected-Last-Subject-Sequence": "0"},
                )
            except nats.js.errors.APIError as exc:
                if is_wrong_last_sequence(exc):
                    log.debug(
                        "job %r: %r already has a result",
                        job_id,
                        result.hostname,
                        extra=log_fields(job_id=job_id, hostname=result.hostname),
                    )
                else:
                    log.warning(
                        "job %r: no_reply of %r refused: %s",
                        job_id,
                        result.hostname,
                        exc,
                        extra=log_fields(job_id=job_id, hostname=result.hostname),
                    )
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning(
                    "job %r: no_reply of %r not recorded: %s",
                    job_id,
                    result.hostname,
                    exc,
                    extra=log_fields(job_id=job_id, hostname=result.hostname),
                )

    async def _add_no_replies(self, job_id: str, no_replies: dict[str, str]) -> bool:
        """Rewrite the job record with ``no_replies`` added, unless it changed or went
        away since it was read (then read it again, a few times at most). False when
        there is no record (deleted or expired).

        Raises:
            NatsUnavailable: JetStream did not answer, or refused the write for another
                reason than a change of the record (e.g. the job stream is full).
        """
        subject = self._subjects.job_record(job_id)
        for _ in range(REWRITE_TRIES):
            raw = await self._direct_get(self._subjects.jobs_stream(), subject=subject)
            record = None if raw is None else _decode_record(raw)
            if raw is None or record is None:
                return False
            if no_replies.items() <= record.no_replies.items():
                return True
            marked = msgspec.structs.replace(record, no_replies=record.no_replies | no_replies)
            with nats_errors(f"recording the verdicts of job {job_id}"):
                try:
                    await self._writer.write(
                        subject,
                        encode(marked),
                        headers={"Nats-Expected-Last-Subject-Sequence": str(raw.seq)},
                    )
                    return True
                except nats.errors.MaxPayloadError:  # never fits: trying again cannot help
                    log.error(
                        "job %r: record too large for %d verdicts",
                        job_id,
                        len(no_replies),
                        extra=log_fields(job_id=job_id),
                    )
                    return True
                except nats.js.errors.APIError as exc:
                    if not is_wrong_last_sequence(exc):
                        raise  # e.g. no room: NatsUnavailable, tried again later
                    log.info(
                        "job %r: record changed while adding verdicts",
                        job_id,
                        extra=log_fields(job_id=job_id),
                    )
        log.warning(
            "job %r: verdicts not recorded, the record kept changing",
            job_id,
            extra=log_fields(job_id=job_id),
        )
        return True

    async def keep_from_now(
        self, job_id: str, hosts: list[str], collected: Mapping[str, ExecResult]
    ) -> None:
        """Write the job record, then each host's result, again, unchanged, so that
        their age, and so their expiry (the streams' ``job_retention_s``), counts from
        now: a rollout's are kept that long after it ends. A host's own result in
        ``collected`` (read from its result subject: it is final) is written as it is;
        any other (a controller's verdict, or one not collected here) is read, and
        copied only if it is still the last, so a late result stays the last. Live
        output chunks are not copied. Failures are logged, not raised."""
        subjects = self._subjects
        await self._copy_last(subjects.jobs_stream(), subjects.job_record(job_id))
        for first in range(0, len(hosts), KEEP_AT_ONCE):
            writes = []
            for host in hosts[first : first + KEEP_AT_ONCE]:
                subject = subjects.result_record(job_id, host)
                result = collected.get(host)
                if result is not None and result.status not in CONTROLLER_DECIDED:
                    writes.append(self._write_kept(subject, encode(result)))
                else:
                    writes.append(self._copy_last(subjects.results_stream(), subject))
            await asyncio.gather(*writes)

    async def _copy_last(self, stream: str, subject: str) -> None:
        """Write the last record on ``subject`` in ``stream`` again, if it is still the
        last then; never raises (a failure is logged)."""
        try:
            raw = await self._direct_get(stream, subject=subject)
        except NatsUnavailable as exc:
            log.warning("%r not kept from now: %s", subject, exc)
            return
        if raw is not None:
            expected = {"Nats-Expected-Last-Subject-Sequence": str(raw.seq)}
            await self._write_kept(subject, raw.data or b"", expected)

    async def _write_kept(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Write ``data`` on ``subject`` for :meth:`keep_from_now`; never raises (a
        failure is logged; a condition in ``headers`` that no longer holds is not one)."""
        try:
            await self._writer.write(subject, data, headers=headers)
        except nats.js.errors.APIError as exc:
            if not is_wrong_last_sequence(exc):  # else a newer record is there: it is kept
                log.warning("%r not kept from now: %s", subject, exc)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("%r not kept from now: %s", subject, exc or type(exc).__name__)

    async def load(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is none (never made, expired, deleted).

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        raw = await self._direct_get(
            self._subjects.jobs_stream(), subject=self._subjects.job_record(job_id)
        )
        return None if raw is None else _decode_record(raw)

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
            record = None if raw is None else _decode_record(raw)
            if record is not None and (visible is None or visible(record)):
                records.append(record)
        return JobPage(records, walk.next_cursor())

    async def delete(self, job_id: str) -> bool:
        """Remove the job record, then its results and its output; by subject, so a
        record rewritten meanwhile (verdicts) goes too. False if there was no record.

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        subjects = self._subjects
        raw = await self._direct_get(subjects.jobs_stream(), subject=subjects.job_record(job_id))
        with nats_errors(f"deleting job {job_id}"):
            for stream, subject in (
                (subjects.jobs_stream(), subjects.job_record(job_id)),
                (subjects.results_stream(), subjects.result_records(job_id)),
                (subjects.results_stream(), subjects.output_records(job_id)),
            ):
                await self._js.purge_stream(stream, subject=subject)
        return raw is not None

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


def _decode_record(raw: nats.js.api.RawStreamMsg) -> JobRecord | None:
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
