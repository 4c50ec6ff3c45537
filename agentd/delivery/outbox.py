"""Everything an agent answers about a job: acknowledgements, refusals, live output
chunks and results, the results recorded in JetStream first."""

from __future__ import annotations

import logging

import nats.errors
from nats.aio.client import Client

from agentd.counters import AgentCounters
from agentd.delivery.recorder import ResultRecorder
from agentd.delivery.replies import encode_to_fit
from agentd.run.live import LiveOutput
from runtime.logs import log_fields
from schemas.messages import (
    ExecAck,
    ExecJob,
    ExecResult,
    OutputChunk,
    ReplyRoute,
    ResultStatus,
    encode,
)
from schemas.subjects import Subjects

log = logging.getLogger("nexec.agentd")


class Outbox:
    """Sends one agent's answers on its connection; a publish that fails is counted in
    ``counters.replies_lost`` and logged, never raised."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        hostname: str,
        *,
        results: ResultRecorder,
        counters: AgentCounters,
    ) -> None:
        self._nc = nc
        self._subjects = subjects
        self._hostname = hostname
        self._results = results
        self._counters = counters

    def result(self, job_id: str, status: ResultStatus, error: str) -> ExecResult:
        """A result of this host that ran no process."""
        return ExecResult(job_id=job_id, hostname=self._hostname, status=status, error=error)

    async def acknowledge(self, job: ExecJob, reply: str) -> None:
        """Say that this agent took the job, where its reply route says."""
        ack = encode(ExecAck(job_id=job.job_id, hostname=self._hostname))
        if job.reply_route is ReplyRoute.RECORD:
            await self._send(self._subjects.ack(job.job_id, self._hostname), ack)
        elif reply:
            await self._send(reply, ack)

    async def refuse(self, reply: str, job_id: str, reason: str) -> None:
        """Count and log a refusal; answer it on ``reply`` only (if any), unrecorded."""
        self._counters.refused += 1
        log.warning("job %r refused: %r", job_id, reason, extra=log_fields(job_id=job_id))
        result = self.result(job_id, ResultStatus.FAILED, reason)
        self._counters.answer(result)
        if reply:
            await self._send(reply, encode(result))

    async def refuse_taken(self, job: ExecJob, reply: str, reason: str) -> None:
        """Count and log the refusal of a job whose id was taken; deliver it as its
        ``failed`` result (recorded, and answered by its reply route)."""
        self._counters.refused += 1
        log.warning("job %r refused: %r", job.job_id, reason, extra=log_fields(job_id=job.job_id))
        await self.deliver(job, reply, self.result(job.job_id, ResultStatus.FAILED, reason))

    async def deliver(self, job: ExecJob, reply: str, result: ExecResult) -> None:
        """Record the result in JetStream (retried in the background until it is, see
        :mod:`agentd.delivery.recorder`); then, for the ``reply`` route, answer the reply subject
        (if any). The ``record`` route's requester reads the record.

        Recording first means that once the requester has the answer, so has the job
        record, or it will as soon as JetStream takes it.
        """
        self._counters.answer(result)
        data = await self.record(result)
        if reply and job.reply_route is ReplyRoute.REPLY:
            await self._send(reply, data)

    async def record(self, result: ExecResult) -> bytes:
        """Record ``result`` (see :mod:`agentd.delivery.recorder`); returns it encoded."""
        data = encode_to_fit(result, self._nc.max_payload)
        await self._results.record(
            self._subjects.result_record(result.job_id, result.hostname),
            data,
            msg_id=f"{result.job_id}/{result.hostname}",
            job_id=result.job_id,
        )
        return data

    def live_output(self, job: ExecJob, cap_bytes: int) -> LiveOutput:
        """The sender of ``job``'s live output chunks."""
        subject = self._subjects.output_record(job.job_id, self._hostname)

        async def publish(chunk: OutputChunk) -> None:
            # Best effort and unacknowledged: the result, recorded after the
            # chunks on this same connection, is the durable answer.
            await self._send(subject, encode(chunk))

        return LiveOutput(job.job_id, self._hostname, cap_bytes, publish)

    async def _send(self, subject: str, data: bytes) -> None:
        """Publish on ``subject`` (a job's reply subject is untrusted: its publisher
        chose it, so it is logged with %r)."""
        try:
            await self._nc.publish(subject, data)
        except nats.errors.Error as exc:
            self._counters.replies_lost += 1
            log.error("reply on %r not sent: %s", subject, exc)
