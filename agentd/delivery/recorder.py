"""Recording results durably: a result JetStream did not acknowledge is written again,
with backoff, until it is or ``result_retry_s`` has passed.

Every write carries ``Nats-Msg-Id`` (the job id and hostname), so a write that landed
but whose acknowledgement was lost is taken as a duplicate when written again: it is
never recorded twice within the stream's duplicate window, and never counted lost.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors

from runtime.logs import log_fields
from runtime.retry import keep_trying
from runtime.streamwriter import StreamWriter

log = logging.getLogger("nexec.agentd.recorder")

MSG_ID_HEADER = "Nats-Msg-Id"


class ResultRecorder:
    """Writes results to their record subjects until JetStream takes them."""

    def __init__(self, writer: StreamWriter, *, retry_for_s: float) -> None:
        self._writer = writer
        self._retry_for_s = retry_for_s
        self._retrying: dict[asyncio.Task[None], str] = {}
        """Each background retry, and the id of the job whose result it writes."""
        self.retried = 0
        """Results recorded only on a later try."""
        self.lost = 0
        """Results given up on: not taken within ``retry_for_s``, or still pending at close."""

    @property
    def pending(self) -> int:
        return len(self._retrying)

    def retrying_jobs(self) -> list[str]:
        """The jobs whose result is being written again (not taken by JetStream yet)."""
        return list(self._retrying.values())

    async def record(self, subject: str, data: bytes, msg_id: str, *, job_id: str) -> bool:
        """Write ``data`` (``job_id``'s result) to ``subject``; True once JetStream took
        it. On failure, keep trying in the background and return False at once."""
        headers = {MSG_ID_HEADER: msg_id}
        try:
            await self._writer.write(subject, data, headers=headers)
            return True
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning(
                "result %r not recorded yet, trying again for up to %g s: %s",
                msg_id,
                self._retry_for_s,
                exc or type(exc).__name__,
                extra=log_fields(job_id=job_id),
            )
        task = asyncio.create_task(self._retry(subject, data, headers, job_id))
        self._retrying[task] = job_id
        task.add_done_callback(lambda done: self._retrying.pop(done, None))
        return False

    async def _retry(self, subject: str, data: bytes, headers: dict[str, str], job_id: str) -> None:
        tries = await keep_trying(
            lambda: self._writer.write(subject, data, headers=headers),
            retry_for_s=self._retry_for_s,
            errors=(nats.errors.Error, TimeoutError),
        )
        if tries is None:
            self.lost += 1
            log.error(
                "result %r not recorded: given up",
                headers[MSG_ID_HEADER],
                extra=log_fields(job_id=job_id),
            )
            return
        self.retried += 1
        log.info(
            "result %r recorded at try %d",
            headers[MSG_ID_HEADER],
            tries,
            extra=log_fields(job_id=job_id),
        )

    async def close(self, timeout_s: float) -> None:
        """Give pending results up to ``timeout_s`` more, then count the rest lost."""
        if not self._retrying:
            return
        _, still = await asyncio.wait(set(self._retrying), timeout=timeout_s)
        for task in still:
            task.cancel()
        if still:
            self.lost += len(still)
            log.error("%d result(s) not recorded before the agent stopped", len(still))
