"""Running the jobs an agent took: one task each, at most ``max_concurrent_jobs`` at
once (the rest wait for a slot), every outcome delivered as a result; and the jobs a
killed agent left running (:mod:`agentd.run.orphans`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import msgspec
from nats.aio.msg import Msg

from agentd.config import AgentConfig
from agentd.counters import AgentCounters
from agentd.delivery.outbox import Outbox
from agentd.run.executor import Executor, ProcessExecutor
from agentd.run.orphans import Orphan, RunningJobs
from agentd.run.policy import Policy
from agentd.run.stops import StopSignals
from runtime.logs import log_fields, log_result
from schemas.decoding import WireError, decode_cancel
from schemas.messages import ExecJob, ExecResult, ResultStatus

log = logging.getLogger("nexec.agentd")


class JobRunner:
    """Runs each job in its own task (nats.py calls a subscription's callback one
    message at a time) and delivers its result through the :class:`Outbox`."""

    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        counters: AgentCounters,
        *,
        executor: Executor | None = None,
    ) -> None:
        """``executor``: by default a :class:`ProcessExecutor` under the agent's policy.

        Raises:
            PolicyError: the policy in ``config`` cannot be applied.
            OSError: ``state_dir`` cannot be made, or ``/proc`` cannot be read.
        """
        self._config = config
        self._policy = Policy.from_config(config)
        # Only processes this agent starts itself are noted (a fake executor starts none).
        self._running_jobs = (
            RunningJobs(config.state_dir, config.hostname) if executor is None else None
        )
        self._orphans: list[Orphan] = []
        self._executor = executor or self._process_executor(outbox)
        self._outbox = outbox
        self._counters = counters
        self._slots = asyncio.Semaphore(config.max_concurrent_jobs)
        self._running: set[asyncio.Task[None]] = set()
        self.stops = StopSignals()

    def _process_executor(self, outbox: Outbox) -> ProcessExecutor:
        config = self._config
        return ProcessExecutor(
            hostname=config.hostname,
            output_cap_bytes=config.output_cap_bytes,
            kill_grace_s=config.kill_grace_s,
            policy=self._policy,
            live_output=functools.partial(outbox.live_output, cap_bytes=config.output_cap_bytes),
            on_start=self._on_process_start,
        )

    def _on_process_start(self, job: ExecJob, pid: int) -> None:
        if self._running_jobs is not None:
            self._running_jobs.started(job.job_id, pid)

    def kill_orphans(self) -> None:
        """Kill the process groups of jobs that a killed agent left running (first of
        all when the agent starts, before it connects)."""
        if self._running_jobs is not None:
            self._orphans = self._running_jobs.reap()

    async def record_orphans(self) -> None:
        """Record the ``failed`` results of the jobs :meth:`kill_orphans` found (before
        the agent takes any job), then forget them."""
        orphans, self._orphans = self._orphans, []
        for orphan in orphans:
            await self._outbox.record(orphan.result())
            orphan.forget()

    async def on_cancel(self, msg: Msg) -> None:
        """A cancel request: stop the job it names, if this agent holds it."""
        try:
            request = decode_cancel(msg.data)
        except WireError as exc:
            log.warning("malformed cancel request ignored: %s", exc)
            return
        caller = request.caller or "unknown"
        if self.stops.stop(request.job_id, f"cancelled on request of {caller}"):
            log.info(
                "job %r: cancelled on request of %r",
                request.job_id,
                caller,
                extra=log_fields(job_id=request.job_id),
            )

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
        taken_ns = time.perf_counter_ns()
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
        log_result(log, result)
        await self._outbox.deliver(job, reply, result)
        self._counters.processing_ns += time.perf_counter_ns() - taken_ns
        if self._running_jobs is not None:
            self._running_jobs.ended(job.job_id)

    async def _execute(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        """Run the job; a bug in the executor still yields a result, never silence."""
        try:
            result = await self._executor.run(job, timeout_s, stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %r: executor error", job.job_id, extra=log_fields(job_id=job.job_id))
            return self._outbox.result(job.job_id, ResultStatus.FAILED, f"agent error: {exc!r}")
        if result.status is ResultStatus.CANCELLED:
            reason = f"{self.stops.reason(job.job_id)}; process group killed"
            result = msgspec.structs.replace(result, error=reason)
        return result
