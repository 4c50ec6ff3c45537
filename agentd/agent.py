"""The agent daemon: its state, lifecycle and subscriptions, acting on intake.

One NATS connection per agent. Whether a job is taken is decided by
:func:`agentd.intake.intake`; taken jobs run in :class:`agentd.run.runner.JobRunner`,
their answers go out through :class:`agentd.delivery.outbox.Outbox`, and the registry
entry is kept by :class:`agentd.heartbeat.Heartbeats`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid

from nats.aio.client import Client
from nats.aio.msg import Msg

from agentd.config import AgentConfig
from agentd.connection import connect, server_shown
from agentd.counters import AgentCounters
from agentd.dedupe import RecentJobs
from agentd.delivery.outbox import Outbox
from agentd.delivery.recorder import ResultRecorder
from agentd.delivery.running_report import RunningReporter
from agentd.heartbeat import Heartbeats
from agentd.intake import (
    Admitted,
    IntakeRules,
    JobMessage,
    Refused,
    intake,
    repeat_refusal,
    usable_reply,
)
from agentd.run.executor import Executor
from agentd.run.runner import JobRunner
from agentd.service import agent_service
from agentd.subscriptions import JobSubscriptions
from runtime.connection import NatsErrorLog, close_within, drain_or_close
from runtime.logs import log_fields, log_summary
from runtime.settings import urls_shown
from runtime.streamwriter import StreamWriter
from schemas.messages import ExecJob

log = logging.getLogger("nexec.agentd")


class AgentState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Agent:
    """A nexec agent: takes jobs addressed to it on NATS and replies with results.

    Use as ``async with Agent(config) as agent: ...`` or call :meth:`start`
    and :meth:`stop` (safe to call twice).
    """

    def __init__(
        self,
        config: AgentConfig,
        executor: Executor | None = None,
        *,
        connection: Client | None = None,
    ) -> None:
        """``connection``: an already connected client to share (fleet simulations);
        by default the agent makes, and on stop drains, its own.

        Raises:
            PolicyError: the policy in ``config`` cannot be applied.
            SigningKeyError: one of ``trusted_signers`` is not a user public nkey.
            OSError: ``state_dir`` cannot be made, or ``/proc`` cannot be read.
        """
        self.config = config
        self.counters = AgentCounters()
        self.state = AgentState.NEW
        self._subjects = config.subjects
        self._owns_connection = connection is None
        self._nc = connection or Client()
        self._records = StreamWriter(self._nc, timeout_s=config.record_timeout_s)
        self._results = ResultRecorder(self._records, retry_for_s=config.result_retry_s)
        self._outbox = Outbox(
            self._nc, self._subjects, config.hostname, results=self._results, counters=self.counters
        )
        self._runner = JobRunner(config, self._outbox, self.counters, executor=executor)
        self._recent_jobs = RecentJobs()
        self._started_at = time.time()
        self.instance_id = uuid.uuid4().hex
        """This process's id: in its heartbeats and its service discovery answers."""
        self._rules = IntakeRules.from_config(config, started_at=self._started_at)
        # Reported while held, and until JetStream took the result (the requester waits).
        self._reporter = RunningReporter(
            self._nc, self._subjects, config.hostname, config.running_report_interval_s,
            lambda: [*self._runner.stops.held(), *self._results.retrying_jobs()],
        )  # fmt: skip
        self._heartbeats = Heartbeats(
            self._records,
            config,
            instance_id=self.instance_id,
            started_at=self._started_at,
            jobs_running=self._runner.__len__,
        )
        self.service = agent_service(
            config,
            self.counters,
            instance_id=self.instance_id,
            started_at=self._started_at,
            jobs_running=self._runner.__len__,
            record_counts=self.record_counts,
        )
        self._job_subscriptions = JobSubscriptions(self._nc, config)
        self.nats_errors = NatsErrorLog(log)
        """Logs (and counts the slow-consumer drops of) the connection's errors."""
        self.reconnected = asyncio.Event()
        """Set once the connection came back after a loss (on this server or another)."""

    @property
    def hostname(self) -> str:
        return self.config.hostname

    @property
    def connected_url(self) -> str:
        """The NATS server this agent is connected to now ("" when it is not)."""
        return server_shown(self._nc)

    @property
    def records_lost(self) -> int:
        """Results given up on: JetStream did not take them within ``result_retry_s``."""
        return self._results.lost

    @property
    def records_retried(self) -> int:
        """Results JetStream took only on a later try."""
        return self._results.retried

    def record_counts(self) -> dict[str, int]:
        """The counters of results written to JetStream (the shutdown summary's and
        ``$SRV.STATS``'s): ``records_retried``, ``records_lost``."""
        return {"records_retried": self._results.retried, "records_lost": self._results.lost}

    @property
    def jobs_running(self) -> int:
        return len(self._runner)

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect, subscribe to every subject addressed to this agent, send the first
        heartbeat, start heartbeats.

        Jobs are taken only once the first heartbeat was sent (state RUNNING): a
        controller expects only agents in the registry, so a job that reaches this
        agent before is dropped unseen, unacknowledged: its requester reports
        ``no_reply`` and it never runs. Retries the connection until NATS answers;
        cancel it to give up.

        First of all, the process groups of jobs that a killed agent left running are
        killed (:mod:`agentd.run.orphans`); their ``failed`` results are recorded before
        any job is taken.
        """
        self.state = AgentState.CONNECTING
        self._runner.kill_orphans()
        if self._owns_connection:
            await connect(
                self._nc,
                self.config,
                running=lambda: self.state is AgentState.RUNNING,
                reconnected=self._on_reconnected,
                errors=self.nats_errors,
            )
        await self._nc.subscribe(self._subjects.cancel(), cb=self._runner.on_cancel)
        await self._records.open()
        await self._runner.record_orphans()
        await self._job_subscriptions.open(self._on_job)
        await self.service.start(self._nc)
        # The first heartbeat before "ready": an agent that says so is in the registry.
        recorded = await self._heartbeats.beat()
        if self.state is not AgentState.CONNECTING:
            return  # stopped while starting
        self.state = AgentState.RUNNING
        self._reporter.start()
        self._heartbeats.start(recorded)
        log.info(
            "nexec-agentd ready: hostname=%s labels=%s nats=%s",
            self.hostname,
            ",".join(f"{k}:{v}" for k, v in sorted(self.config.labels.items())) or "-",
            urls_shown(self.config.nats_url),
        )

    async def stop(self) -> None:
        """Leave the registry, stop taking jobs, let running ones finish within
        ``drain_timeout_s``, cancel the rest, send every result, close. Safe to call twice.

        Never hangs on an unresponsive NATS server: each step that waits for the
        server is bounded by ``connect_timeout_s``, after which the connection is
        closed without waiting further.
        """
        if self.state in (AgentState.STOPPING, AgentState.STOPPED):
            return
        previous_state = self.state
        self.state = AgentState.STOPPING
        if previous_state is AgentState.RUNNING:
            await self._heartbeats.stop()  # first: new requests no longer expect this agent
            await self.service.stop()
            await self._job_subscriptions.drain()
            await self._runner.finish()
            await self._results.close(self.config.connect_timeout_s)
            await self._reporter.stop()
        if previous_state in (AgentState.RUNNING, AgentState.CONNECTING):
            await self._close_connection(drain=previous_state is AgentState.RUNNING)
        self.state = AgentState.STOPPED
        counts: dict[str, int | str] = {"hostname": self.hostname, **self.counters.counts()}
        counts.update(self.record_counts())
        log_summary(log, "nexec-agentd stopped", counts)

    async def _close_connection(self, *, drain: bool) -> None:
        """Drain (or close) the agent's own connection; a shared one stays open."""
        timeout_s = self.config.connect_timeout_s
        if not self._owns_connection:
            await self._records.close()
        elif drain:
            await drain_or_close(self._nc, timeout_s)
        else:
            await close_within(self._nc, timeout_s)

    async def _on_job(self, msg: Msg) -> None:
        """Count the job message and the time spent on it here (:meth:`_take`)."""
        self.counters.received += 1
        began_ns = time.perf_counter_ns()
        try:
            await self._take(msg)
        finally:
            self.counters.processing_ns += time.perf_counter_ns() - began_ns

    async def _take(self, msg: Msg) -> None:
        """Act on :func:`agentd.intake.intake`: ignore, refuse, or take the job's id and
        then refuse it by its reply route or run it."""
        if self.state is AgentState.CONNECTING:
            return  # not in the registry yet: nobody expects this agent's answer
        reply = usable_reply(self._subjects, msg.reply)
        verdict = intake(JobMessage(msg.data, msg.subject, msg.headers), self._rules, time.time())
        if isinstance(verdict, Refused):
            await self._outbox.refuse(reply, verdict.job_id, verdict.reason)
        elif isinstance(verdict, Admitted) and not await self._is_repeat(verdict.job, reply):
            if verdict.refusal:
                await self._outbox.refuse_taken(verdict.job, reply, verdict.refusal)
                return
            await self._outbox.acknowledge(verdict.job, reply)
            self._runner.run(verdict.job, reply)
            self._reporter.wake()

    async def _is_repeat(self, job: ExecJob, reply: str) -> bool:
        """Take the job's id and return False; or, if it was taken before, return True
        (it does not run again), after refusing it if it is a replay."""
        earlier = self._recent_jobs.take(job.job_id, job.deadline, reply)
        if earlier is None:
            return False
        self.counters.duplicates += 1
        signed = self._rules.verifier is not None
        if refusal := repeat_refusal(signed=signed, reply=reply, earlier_reply=earlier.reply):
            # Someone else asks for the answer: a replay, not NATS delivering twice.
            await self._outbox.refuse(reply, job.job_id, refusal)
        else:
            log.warning(
                "job %r delivered again; not run twice",
                job.job_id,
                extra=log_fields(job_id=job.job_id),
            )
        return True

    async def _on_reconnected(self) -> None:
        log.info("NATS: reconnected to %s", self.connected_url)
        self.reconnected.set()
        await self._heartbeats.beat()
