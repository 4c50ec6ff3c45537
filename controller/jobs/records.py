"""Job records in JetStream: the request in one stream, each host's result in another.

A controller writes the job record before it publishes the job; agents write
their own results, so a result that comes after the HTTP answer, or while no
controller runs, is still recorded. The reads are :mod:`controller.jobs.record_reads`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from controller.errors import NatsUnavailable, StorageFull, nats_errors
from controller.jobs.record_reads import JobReads, decode_stored_record
from runtime.jetstream import ensure_stream, is_wrong_last_sequence, record_stream_configs
from runtime.logs import log_fields
from runtime.streamwriter import StreamAck, StreamWriter
from schemas.messages import ExecResult, JobRecord, ResultStatus, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.records")


REWRITE_TRIES = 3
"""Reads and conditional writes of a job record that another writer keeps changing."""

CONTROLLER_DECIDED = (ResultStatus.NO_REPLY, ResultStatus.SKIPPED)
"""The statuses only a controller writes (a host may still record its own result
after its ``no_reply``)."""
KEEP_COPIES_AT_ONCE = 32
"""Results :meth:`JobStore.keep_from_now` reads and copies at once (verdicts)."""
KEEP_IN_FLIGHT = 128
KEEP_IN_FLIGHT_BYTES = 4 * 1024 * 1024
"""At most so many results (and bytes) :meth:`JobStore.keep_from_now` has sent and
not seen acknowledged; ``KEEP_IN_FLIGHT_BYTES`` is passed by one result alone."""


def _ignore_outcome(ack: asyncio.Future[StreamAck]) -> None:
    """Retrieve the outcome of a write nobody waits for (so none is reported unseen)."""
    if not ack.cancelled():
        ack.exception()


class JobStore(JobReads):
    """Writes job records (and reads them: :class:`JobReads`); every method may raise
    :class:`NatsUnavailable`."""

    def __init__(self, js: JetStreamContext, writer: StreamWriter, subjects: Subjects) -> None:
        """``writer`` writes the records (opened once connected); ``js`` does the rest."""
        super().__init__(js, subjects)
        self._writer = writer
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

    async def record_taker(self, job_id: str, hostname: str) -> None:
        """Write in the ``_any`` job's record the host that took it (``taken_by``), which
        the job view then shows alone whatever other hosts recorded. Never raises: a
        failure is logged (the view then shows the first host whose result is recorded)."""

        def taken(record: JobRecord) -> JobRecord | None:
            if record.expected_hosts is not None or record.taken_by == hostname:
                return None
            return msgspec.structs.replace(record, taken_by=hostname)

        try:
            await self._amend(job_id, taken, "the host that took it")
        except NatsUnavailable as exc:
            log.warning(
                "job %r: the host that took it, %r, not recorded: %s",
                job_id,
                hostname,
                exc,
                extra=log_fields(job_id=job_id, hostname=hostname),
            )

    async def _add_no_replies(self, job_id: str, no_replies: dict[str, str]) -> bool:
        """Rewrite the job record with ``no_replies`` added (see :meth:`_amend`). False
        when there is no record (deleted or expired).

        Raises:
            NatsUnavailable: JetStream did not answer, or refused the write for another
                reason than a change of the record (e.g. the job stream is full).
        """

        def marked(record: JobRecord) -> JobRecord | None:
            if no_replies.items() <= record.no_replies.items():
                return None
            return msgspec.structs.replace(record, no_replies=record.no_replies | no_replies)

        return await self._amend(job_id, marked, f"{len(no_replies)} verdicts")

    async def _amend(
        self, job_id: str, change: Callable[[JobRecord], JobRecord | None], what: str
    ) -> bool:
        """Rewrite the job record as ``change`` makes it (None: nothing to change),
        unless it changed or went away since it was read (then read it again, a few
        times at most). False when there is no record (deleted or expired).

        Raises:
            NatsUnavailable: JetStream did not answer, or refused the write for another
                reason than a change of the record (e.g. the job stream is full).
        """
        subject = self._subjects.job_record(job_id)
        for _ in range(REWRITE_TRIES):
            raw = await self._direct_get(self._subjects.jobs_stream(), subject=subject)
            record = None if raw is None else decode_stored_record(raw)
            if raw is None or record is None:
                return False
            changed = change(record)
            if changed is None:
                return True
            if await self._rewrite(job_id, changed, raw.seq, what):
                return True
        log.warning(
            "job %r: %s not recorded, the record kept changing",
            job_id,
            what,
            extra=log_fields(job_id=job_id),
        )
        return True

    async def _rewrite(self, job_id: str, marked: JobRecord, seq: int | None, what: str) -> bool:
        """Write ``marked`` if job ``job_id``'s record is still at ``seq``; False when it changed
        since (read it again). A record too large to write counts as done (logged):
        trying again cannot help.

        Raises:
            NatsUnavailable: JetStream did not answer, or refused the write for another
                reason than a change of the record.
        """
        with nats_errors(f"recording {what} of job {job_id}"):
            try:
                await self._writer.write(
                    self._subjects.job_record(job_id),
                    encode(marked),
                    headers={"Nats-Expected-Last-Subject-Sequence": str(seq)},
                )
                return True
            except nats.errors.MaxPayloadError:
                log.error(
                    "job %r: record too large for %s",
                    job_id,
                    what,
                    extra=log_fields(job_id=job_id),
                )
                return True
            except nats.js.errors.APIError as exc:
                if not is_wrong_last_sequence(exc):
                    raise  # e.g. no room: NatsUnavailable, tried again later
                log.info(
                    "job %r: record changed while adding %s",
                    job_id,
                    what,
                    extra=log_fields(job_id=job_id),
                )
                return False

    async def keep_from_now(
        self, job_id: str, hosts: list[str], collected: Mapping[str, ExecResult]
    ) -> None:
        """Write the job record, then each host's result, again, so that their age, and
        so their expiry (the streams' ``job_retention_s``), counts from now: a
        rollout's are kept that long after it ends. A host's own result in
        ``collected`` (read from its result subject: it is final) is written as decoded
        (:meth:`_write_own_again`: a field this version does not know is not kept);
        any other (a controller's verdict, or one not collected here) is read, and
        copied unchanged only if it is still the last, so a late result stays the
        last. Live output chunks are not copied. Failures are logged, not raised."""
        subjects = self._subjects
        await self._copy_last(subjects.jobs_stream(), subjects.job_record(job_id))
        others = await self._write_own_again(job_id, hosts, collected)
        for first in range(0, len(others), KEEP_COPIES_AT_ONCE):
            chunk = others[first : first + KEEP_COPIES_AT_ONCE]
            await asyncio.gather(*(self._copy_last(subjects.results_stream(), s) for s in chunk))

    async def _write_own_again(
        self, job_id: str, hosts: list[str], collected: Mapping[str, ExecResult]
    ) -> list[str]:
        """Write again each host's own result in ``collected``, pipelined: sent one
        after another, at most :data:`KEEP_IN_FLIGHT` (and
        :data:`KEEP_IN_FLIGHT_BYTES`) not yet acknowledged, no task per write. The
        result subjects of the other hosts (to be copied); never raises."""
        in_flight: deque[tuple[str, int, asyncio.Future[StreamAck]]] = deque()
        others, size = [], 0
        try:
            for host in hosts:
                subject = self._subjects.result_record(job_id, host)
                result = collected.get(host)
                if result is None or result.status in CONTROLLER_DECIDED:
                    others.append(subject)
                    continue
                data = encode(result)
                while in_flight and (
                    len(in_flight) >= KEEP_IN_FLIGHT or size + len(data) > KEEP_IN_FLIGHT_BYTES
                ):
                    size -= await self._kept(*in_flight.popleft())
                sent = await self._send_kept(subject, data)
                if sent is not None:
                    in_flight.append((subject, len(data), sent))
                    size += len(data)
            while in_flight:
                await self._kept(*in_flight.popleft())
        finally:
            for _, _, ack in in_flight:  # cancelled: nobody waits for these any more
                ack.add_done_callback(_ignore_outcome)
        return others

    async def _send_kept(self, subject: str, data: bytes) -> asyncio.Future[StreamAck] | None:
        """Send ``data`` on ``subject`` for :meth:`keep_from_now`; its acknowledgement to
        come, or None when it was not sent (logged); never raises."""
        try:
            return await self._writer.send(subject, data)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("%r not kept from now: %s", subject, exc or type(exc).__name__)
            return None

    async def _kept(self, subject: str, size: int, ack: asyncio.Future[StreamAck]) -> int:
        """Wait for the acknowledgement of a write of :meth:`keep_from_now`; ``size``,
        the bytes it wrote. Never raises (a failure is logged)."""
        try:
            await ack
        except (nats.errors.Error, TimeoutError) as exc:  # APIError is a nats.errors.Error
            log.warning("%r not kept from now: %s", subject, exc or type(exc).__name__)
        return size

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
