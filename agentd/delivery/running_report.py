"""Running reports: while an agent holds jobs, one message every interval listing them.

A controller collecting a job hears of each host that acknowledged it on every
report that lists the job; a host it has not heard of for ``agent_lost_after_s`` is
given up as ``no_reply`` (``agent lost while running``) long before the job's
deadline. One message per agent per interval, whatever the number of jobs (more
only past :data:`schemas.messages.MAX_RUNNING_JOB_IDS`); none while the agent is
idle. Plain publishes: a report lost while NATS is away is simply the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
from nats.aio.client import Client

from schemas.messages import MAX_RUNNING_JOB_IDS, RunningReport, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.agentd.running")


class RunningReporter:
    """Publishes ``held()`` on the host's running subject every ``interval_s`` while
    it is not empty. :meth:`wake` after taking a job; :meth:`stop` is safe twice."""

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        hostname: str,
        interval_s: float,
        held: Callable[[], list[str]],
    ) -> None:
        self._nc = nc
        self._subject = subjects.running(hostname)
        self._hostname = hostname
        self._interval_s = interval_s
        self._held = held
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        """Reports published since the agent started."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="running reports")

    def wake(self) -> None:
        """A job was taken: report from the next interval on."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})

    async def _loop(self) -> None:
        while True:
            if not self._held():
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(self._interval_s)
            job_ids = self._held()
            for start in range(0, len(job_ids), MAX_RUNNING_JOB_IDS):
                await self._publish(job_ids[start : start + MAX_RUNNING_JOB_IDS])

    async def _publish(self, job_ids: list[str]) -> None:
        report = RunningReport(
            hostname=self._hostname,
            job_ids=job_ids,
            interval_s=self._interval_s,
            sent_at=time.time(),
        )
        try:
            await self._nc.publish(self._subject, encode(report))
        except nats.errors.Error as exc:
            log.warning("running report not sent: %s", exc or type(exc).__name__)
            return
        self.sent += 1
