"""Running the jobs an agent took: one task each, at most ``max_concurrent_jobs`` at
once (the rest wait for a slot), every outcome delivered as a result."""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec

from agentd.config import AgentConfig
from agentd.counters import AgentCounters
from agentd.executor import Executor
from agentd.outbox import Outbox
from agentd.policy import Policy
from agentd.stops import StopSignals
from schemas import ExecJob, ExecResult, ResultStatus

log = logging.getLogger("nexec.agentd")


class JobRunner:
    """Runs each job in its own task (nats.py calls a subscription's callback one
    message at a time) and delivers its result through the :class:`Outbox`."""

    def __init__(
        self,
        config: AgentConfig,
        executor: Executor,
        policy: Policy,
        outbox: Outbox,
        counters: AgentCounters,
    ) -> None:
        self._config = config
        self._executor = executor
        self._policy = policy
        self._outbox = outbox
        self._counters = counters
        self._slots = asyncio.Semaphore(config.max_concurrent_jobs)
        self._running: set[asyncio.Task[None]] = set()
        self.stops = StopSignals()

    def __len__(self) -> int:
        """The jobs held now: queued for a slot or running."""
        return len(self._running)

    def run(self, job: ExecJob, reply: str) -> None:
        """Start ``job`` (acknowledged already); its result goes to ``reply`` or its record."""
        stop = self.stops.open(job.job_id)
        task = asyncio.create_task(self._run(job, reply, stop))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: self.stops.close(job.job_id))

    async def finish(self) -> None:
        """Let running jobs finish within ``drain_timeout_s``; then stop the rest (their
        process groups killed) and wait until their results are delivered."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=self._config.drain_timeout_s)
        if not pending:
            return
        log.warning("drain timeout: cancelling %d running job(s)", len(pending))
        self.stops.stop_all("cancelled: the agent is shutting down")
        _, still_pending = await asyncio.wait(pending, timeout=3 * self._config.kill_grace_s + 1)
        for task in still_pending:
            task.cancel()  # the executor kills the process group on cancel
        await asyncio.gather(*still_pending, return_exceptions=True)

    async def _run(self, job: ExecJob, reply: str, stop: asyncio.Event) -> None:
        async with self._slots:
            # Leave the kill grace before the deadline, so that even a job killed
            # at its timeout answers while the requester still listens.
            remaining_s = job.deadline - time.time() - self._config.kill_grace_s
            if stop.is_set():
                reason = f"{self.stops.reason(job.job_id)} before it started"
                result = self._outbox.result(job.job_id, ResultStatus.CANCELLED, reason)
            elif remaining_s <= 0:
                result = self._outbox.result(
                    job.job_id, ResultStatus.FAILED, "expired before start: its deadline passed"
                )
            elif refusal := self._policy.refusal(job):
                self._counters.refused += 1
                result = self._outbox.result(job.job_id, ResultStatus.FAILED, refusal)
            else:
                self._counters.started += 1
                result = await self._execute(job, min(float(job.timeout_s), remaining_s), stop)
        await self._outbox.deliver(job, reply, result)

    async def _execute(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        """Run the job; a bug in the executor still yields a result, never silence."""
        try:
            result = await self._executor.run(job, timeout_s, stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %r: executor error", job.job_id)
            return self._outbox.result(job.job_id, ResultStatus.FAILED, f"agent error: {exc!r}")
        if result.status is ResultStatus.CANCELLED:
            reason = f"{self.stops.reason(job.job_id)}; process group killed"
            result = msgspec.structs.replace(result, error=reason)
        return result
