"""The controller's ``no_reply`` verdicts, recorded before the caller is told them.

When a job's collection ends with hosts given up, the controller writes those
verdicts to the job record and only then answers. If JetStream does not take them
(NATS is down at that moment), the caller is answered anyway and the write is tried
again in the background, with backoff, for up to the job's retention: the record
then keeps the verdict next to any result the host records later, marked late
(docs/jobs.md). A controller stopped before that write lands loses the verdict; the
job view then shows the host's own result, or ``no_reply`` after the deadline.
"""

from __future__ import annotations

import asyncio
import logging

from controller.errors import NatsUnavailable
from controller.jobs.records import JobStore
from runtime.logs import log_fields
from runtime.retry import keep_trying
from schemas.messages import ExecResult

log = logging.getLogger("nexec.controller.verdicts")


class VerdictRecorder:
    """Records each job's ``no_reply`` verdicts, trying again while JetStream fails."""

    def __init__(self, store: JobStore, *, retry_for_s: float) -> None:
        self._store = store
        self._retry_for_s = retry_for_s
        self._retrying: set[asyncio.Task[None]] = set()
        self.lost = 0
        """Jobs whose verdicts were given up on, or still pending at close."""

    @property
    def pending(self) -> int:
        """Jobs whose verdicts are being tried again."""
        return len(self._retrying)

    async def record(self, results: list[ExecResult]) -> None:
        """Record one job's ``no_reply`` results; when JetStream fails, keep trying in
        the background and return at once (never raises)."""
        if not results:
            return
        job_id = results[0].job_id
        try:
            await self._store.record_no_replies(job_id, results)
            return
        except NatsUnavailable as exc:
            log.warning(
                "job %r: verdicts not recorded yet, trying again for up to %g s: %s",
                job_id,
                self._retry_for_s,
                exc,
                extra=log_fields(job_id=job_id),
            )
        task = asyncio.create_task(self._retry(job_id, results))
        self._retrying.add(task)
        task.add_done_callback(self._retrying.discard)

    async def _retry(self, job_id: str, results: list[ExecResult]) -> None:
        tries = await keep_trying(
            lambda: self._store.record_no_replies(job_id, results),
            retry_for_s=self._retry_for_s,
            errors=(NatsUnavailable,),
        )
        if tries is None:
            self.lost += 1
            log.error(
                "job %r: verdicts not recorded: given up", job_id, extra=log_fields(job_id=job_id)
            )
        else:
            log.info(
                "job %r: verdicts recorded at try %d",
                job_id,
                tries,
                extra=log_fields(job_id=job_id),
            )

    async def close(self) -> None:
        """Stop trying (on shutdown); what is still pending is counted lost and logged."""
        for task in self._retrying:
            task.cancel()
        if self._retrying:
            self.lost += len(self._retrying)
            log.error("%d job(s)' verdicts not recorded before stopping", len(self._retrying))
        await asyncio.gather(*self._retrying, return_exceptions=True)
