"""The audit trail: every exec, shell, cancel and job delete request, and every 401 and 403,
appended to a JetStream stream; read back newest first with ``GET /audit``.

A request that acts (an exec, shell, cancel or delete that passed every check)
is recorded *before* it acts, with :meth:`AuditLog.write`: JetStream acknowledges
the record before the job is published, the cancel sent or the job deleted, and
if it does not, the request fails and nothing happens. If the action then fails,
a second record with the failure follows. Every other request (refused before
acting) is appended after its answer without holding it up (the acknowledgement
is checked in the background); such a record that cannot be written is logged in
full instead, so it is never silently lost. Which operations are audited whatever
their status is declared with each route (``audited``, controller.http.operations).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
from aiohttp import web
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from controller.errors import nats_errors
from controller.jobs.pages import NewestFirst
from runtime.jetstream import ensure_stream
from runtime.logs import log_fields
from runtime.streamwriter import StreamAck, StreamWriter
from schemas.api import ErrorBody
from schemas.decoding import WireError, decode_audit
from schemas.messages import AuditRecord, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.audit")


@dataclass
class AuditDetails:
    """What a handler adds to its request's audit record."""

    target: str = ""
    command: str = ""
    args: tuple[str, ...] = ()
    shell: bool = False
    job_id: str = ""
    dry_run: bool = False
    recorded: bool = False
    """The request's record was stored before it acted (:meth:`AuditLog.write`)."""


@dataclass(frozen=True, slots=True)
class AuditPage:
    records: list[AuditRecord]
    next_cursor: str | None


class AuditLog:
    def __init__(self, js: JetStreamContext, writer: StreamWriter, subjects: Subjects) -> None:
        """``writer`` appends the records (opened once connected; its timeout is the
        acknowledgement's); ``js`` reads them back."""
        self._js = js
        self._writer = writer
        self._subjects = subjects
        self._pending: set[asyncio.Future[StreamAck]] = set()
        self.lost = 0
        self.reads = 0

    async def ensure_stream(
        self, *, retention_s: float, replicas: int, max_bytes: int | None = None
    ) -> None:
        """Kept ``retention_s``, at most ``max_bytes``; when full, new records are refused
        (and logged whole), never the oldest dropped: a trail with holes proves nothing.

        Raises: NatsUnavailable when the stream cannot be created or updated."""
        config = StreamConfig(
            name=self._subjects.audit_stream(),
            description="nexec audit trail",
            subjects=[self._subjects.audit_record()],
            max_age=retention_s,
            max_bytes=max_bytes or -1,
            discard=DiscardPolicy.NEW,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
            deny_delete=True,
            deny_purge=True,
        )
        with nats_errors(f"setting up stream {config.name}"):
            await ensure_stream(self._js, config)

    async def append(self, record: AuditRecord, *, connected: bool) -> None:
        """Publish the record; if that is impossible, log it whole at ERROR."""
        if not connected:
            self._lose(record, "NATS is not connected")
            return
        try:
            acked = await self._writer.send(self._subjects.audit_record(), encode(record))
        except nats.errors.Error as exc:
            self._lose(record, str(exc) or type(exc).__name__)
            return
        self._pending.add(acked)
        acked.add_done_callback(lambda future: self._acknowledged(future, record))

    async def write(self, record: AuditRecord) -> None:
        """Store the record and wait for JetStream's acknowledgement: the record of a
        request about to act.

        Raises:
            NatsUnavailable: not stored (NATS down, no stream, or no acknowledgement
                within the JetStream timeout); the request must not act.
        """
        with nats_errors("recording the audit record"):
            await self._writer.write(self._subjects.audit_record(), encode(record))

    async def flushed(self) -> None:
        """Wait until every record appended so far is acknowledged or given up
        (each is given up after the ack timeout)."""
        if self._pending:
            await asyncio.wait(set(self._pending))

    def _acknowledged(self, future: asyncio.Future[StreamAck], record: AuditRecord) -> None:
        self._pending.discard(future)
        if future.cancelled():  # nothing cancels it today; never read exception() then
            self._lose(record, "given up on")
        elif isinstance(future.exception(), TimeoutError):
            self._lose(record, "no acknowledgement in time")
        elif future.exception() is not None:
            self._lose(record, repr(future.exception()))

    def _lose(self, record: AuditRecord, reason: str) -> None:
        self.lost += 1
        log.error(
            "audit record not stored (%s): %s",
            reason,
            encode(record).decode(),
            extra=log_fields(job_id=record.job_id or None, key_name=record.key_name or None),
        )

    async def page(
        self, *, limit: int, cursor: str | None, key_name: str | None, since: float, until: float
    ) -> AuditPage:
        """Up to ``limit`` records newest first, older than ``cursor``, matching the filters.

        Raises:
            NatsUnavailable: JetStream did not answer.
            ValueError: ``cursor`` is not one this method returned.
        """
        stream = self._subjects.audit_stream()
        with nats_errors("reading the audit trail"):
            walk = await NewestFirst.start(self._js, stream, cursor, limit=limit)
            records: list[AuditRecord] = []
            while len(records) < limit and walk.can_take():
                record = await self._read(stream, walk.take())
                if record is None or record.time > until:
                    continue
                if record.time < since:
                    walk.finish()  # older ones are older still
                    break
                if key_name is None or record.key_name == key_name:
                    records.append(record)
        return AuditPage(records, walk.next_cursor())

    async def _read(self, stream: str, seq: int) -> AuditRecord | None:
        self.reads += 1
        try:
            raw = await self._js.get_msg(stream, seq=seq, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        try:
            return decode_audit(raw.data or b"")
        except WireError as exc:
            log.warning("malformed audit record %d skipped: %s", seq, exc)
            return None


MAX_AUDITED_PATH = 256
"""Characters of a request's path kept in its audit record (ids and targets are far
shorter; anything longer is cut, so a caller cannot grow the trail at will)."""


def shown_path(path: str) -> str:
    return path if len(path) <= MAX_AUDITED_PATH else f"{path[:MAX_AUDITED_PATH]}..."


def audit_record(
    request: web.Request, response: web.StreamResponse, key_name: str, details: AuditDetails | None
) -> AuditRecord:
    """The record of one request, from what the handler noted and the response."""
    outcome = "accepted"
    if response.status >= 400 and isinstance(response, web.Response) and response.body:
        try:
            outcome = msgspec.json.decode(response.body, type=ErrorBody).error  # type: ignore[arg-type]
        except msgspec.DecodeError:
            outcome = f"HTTP {response.status}"
    return request_record(request, key_name, details, status=response.status, outcome=outcome)


def request_record(
    request: web.Request,
    key_name: str,
    details: AuditDetails | None,
    *,
    status: int,
    outcome: str,
) -> AuditRecord:
    """The record of one request with the given status and outcome (before its answer,
    the status it answers if its action succeeds)."""
    details = details or AuditDetails(
        target=request.match_info.get("hostname", ""),
        dry_run=request.query.get("dry_run") == "true",  # refused before its handler
    )
    return AuditRecord(
        time=time.time(),
        key_name=key_name,
        source=request.remote or "",
        method=request.method,
        path=shown_path(request.path),
        status=status,
        outcome=outcome,
        target=details.target,
        command=details.command,
        args=list(details.args),
        shell=details.shell,
        job_id=details.job_id,
        dry_run=details.dry_run,
    )
