"""The agent daemon: subscriptions, job intake, heartbeats and shutdown.

One NATS connection per agent. Every job runs in its own task (nats.py calls
a subscription's callback one message at a time), at most
``max_concurrent_jobs`` at once; the rest wait for a slot.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentd.config import AgentConfig
from agentd.dedupe import RecentJobs
from agentd.executor import Executor, ProcessExecutor
from agentd.intake import job_refusal, usable_reply
from agentd.live import LiveOutput
from agentd.orphans import RunningJobs
from agentd.policy import Policy
from agentd.recorder import ResultRecorder
from agentd.replies import encode_to_fit
from agentd.running_report import RunningReporter
from agentd.stops import StopSignals
from runtime.connection import close_within, drain_or_close
from runtime.jetstream import KV_DELETE_HEADERS
from runtime.settings import server_urls
from runtime.signing import SignatureRejected, SignatureVerifier
from runtime.streamwriter import MSG_TTL_HEADER, StreamWriter
from schemas import (
    ANY_QUEUE_GROUP,
    ExecAck,
    ExecJob,
    ExecResult,
    Heartbeat,
    OutputChunk,
    ReplyRoute,
    ResultStatus,
    Target,
    TargetSyntaxError,
    WireError,
    __version__,
    decode_cancel,
    decode_job,
    encode,
    parse_target,
)

log = logging.getLogger("nexec.agentd")

# Seconds before a heartbeat that JetStream did not take is tried again.
HEARTBEAT_RETRY_S = 1.0


def signature_verifier(config: AgentConfig) -> SignatureVerifier | None:
    """The verifier of job signatures, or None when the agent trusts no signer."""
    if not config.trusted_signers:
        return None
    return SignatureVerifier(config.trusted_signers)


class AgentState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(slots=True)
class AgentCounters:
    received: int = 0
    started: int = 0
    duplicates: int = 0
    refused: int = 0
    replies_lost: int = 0


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
            OSError: ``state_dir`` cannot be made, or ``/proc`` cannot be read.
        """
        self.config = config
        self.counters = AgentCounters()
        self.state = AgentState.NEW
        self._subjects = config.subjects
        self._policy = Policy.from_config(config)
        # Only processes this agent starts itself are noted (a fake executor starts none).
        self._running_jobs = (
            RunningJobs(config.state_dir, config.hostname) if executor is None else None
        )
        self._executor = executor or ProcessExecutor(
            hostname=config.hostname,
            output_cap_bytes=config.output_cap_bytes,
            kill_grace_s=config.kill_grace_s,
            policy=self._policy,
            live_output=self._live_output,
            on_start=self._on_process_start,
        )
        self._owns_connection = connection is None
        self._nc = connection or Client()
        self._records = StreamWriter(self._nc, timeout_s=config.record_timeout_s)
        self._results = ResultRecorder(self._records, retry_for_s=config.result_retry_s)
        self._slots = asyncio.Semaphore(config.max_concurrent_jobs)
        self._recent_jobs = RecentJobs()
        self._verifier = signature_verifier(config)
        self._running: set[asyncio.Task[None]] = set()
        self._stops = StopSignals()
        # Reported while held, and until JetStream took the result (the requester waits).
        self._reporter = RunningReporter(
            self._nc, self._subjects, config.hostname, config.running_report_interval_s,
            lambda: [*self._stops.held(), *self._results.retrying_jobs()],
        )  # fmt: skip
        self._job_subscriptions: list[Subscription] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.reconnected = asyncio.Event()
        """Set once the connection came back after a loss (on this server or another)."""
        self._instance_id = uuid.uuid4().hex
        self._started_at = time.time()

    @property
    def hostname(self) -> str:
        return self.config.hostname

    @property
    def connected_url(self) -> str:
        """The NATS server this agent is connected to now ("" when it is not)."""
        url = self._nc.connected_url
        return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else ""

    @property
    def records_lost(self) -> int:
        """Results given up on: JetStream did not take them within ``result_retry_s``."""
        return self._results.lost

    @property
    def records_retried(self) -> int:
        """Results JetStream took only on a later try."""
        return self._results.retried

    @property
    def jobs_running(self) -> int:
        return len(self._running)

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
        killed (:mod:`agentd.orphans`); their ``failed`` results are recorded before
        any job is taken.
        """
        self.state = AgentState.CONNECTING
        orphans = self._running_jobs.reap() if self._running_jobs is not None else []
        if self._owns_connection:
            await self._connect()
        await self._nc.subscribe(self._subjects.cancel(), cb=self._on_cancel)
        await self._records.open()
        for orphan in orphans:
            await self._record(orphan.result())
            orphan.forget()
        for subject in self._job_subjects():
            self._job_subscriptions.append(await self._nc.subscribe(subject, cb=self._on_job))
        self._job_subscriptions.append(
            await self._nc.subscribe(
                self._subjects.exec_any(), queue=ANY_QUEUE_GROUP, cb=self._on_job
            )
        )
        await self._nc.flush(timeout=max(1, round(self.config.connect_timeout_s)))
        # The first heartbeat before "ready": an agent that says so is in the registry.
        recorded = await self._publish_heartbeat()
        if self.state is not AgentState.CONNECTING:
            return  # stopped while starting
        self.state = AgentState.RUNNING
        self._reporter.start()
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(recorded))
        log.info(
            "nexec-agentd ready: hostname=%s labels=%s nats=%s",
            self.hostname,
            ",".join(f"{k}:{v}" for k, v in sorted(self.config.labels.items())) or "-",
            self.config.nats_url,
        )

    async def _connect(self) -> None:
        await self._nc.connect(
            servers=server_urls(self.config.nats_url),
            name=f"nexec-agentd {self.hostname}",
            connect_timeout=max(1, round(self.config.connect_timeout_s)),
            max_reconnect_attempts=-1,
            error_cb=self._on_nats_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **self.config.nats_connect_options(),
        )

    def _job_subjects(self) -> list[str]:
        labels = sorted(self.config.labels.items())
        return [
            self._subjects.exec_host(self.hostname),
            *(self._subjects.exec_label(key, value) for key, value in labels),
            self._subjects.exec_all(),
        ]

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
            if self._heartbeat_task is not None:
                # Bounded: nats-py can swallow a cancel that meets a reply; the loop
                # then ends on the state instead.
                self._heartbeat_task.cancel()
                await asyncio.wait({self._heartbeat_task}, timeout=self.config.connect_timeout_s)
            await self._leave_registry()  # first: new requests no longer expect this agent
            await self._drain_job_subscriptions()
            await self._finish_running_jobs()
            await self._results.close(self.config.connect_timeout_s)
            await self._reporter.stop()
            if self._owns_connection:
                await drain_or_close(self._nc, self.config.connect_timeout_s)
            else:
                await self._records.close()
        elif previous_state is AgentState.CONNECTING:
            if self._owns_connection:
                await close_within(self._nc, self.config.connect_timeout_s)
            else:
                await self._records.close()
        self.state = AgentState.STOPPED
        counters = self.counters
        log.info(
            "nexec-agentd stopped: hostname=%s received=%d started=%d duplicates=%d "
            "refused=%d replies_lost=%d records_retried=%d records_lost=%d",
            self.hostname,
            counters.received,
            counters.started,
            counters.duplicates,
            counters.refused,
            counters.replies_lost,
            self._results.retried,
            self._results.lost,
        )

    async def _drain_job_subscriptions(self) -> None:
        """Stop taking jobs, but take the ones NATS already delivered. Bounded: a
        drain waits for a round trip to the server, which may not answer."""
        drains = [
            asyncio.ensure_future(subscription.drain())  # type: ignore[no-untyped-call]  # nats-py: untyped
            for subscription in self._job_subscriptions
        ]
        if not drains:
            return
        _, pending = await asyncio.wait(drains, timeout=self.config.connect_timeout_s)
        for drain in pending:
            drain.cancel()
        results = await asyncio.gather(*drains, return_exceptions=True)
        if pending or any(isinstance(result, Exception) for result in results):
            log.warning("job subscriptions not drained: NATS did not answer")

    async def _finish_running_jobs(self) -> None:
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=self.config.drain_timeout_s)
        if not pending:
            return
        log.warning("drain timeout: cancelling %d running job(s)", len(pending))
        self._stops.stop_all("cancelled: the agent is shutting down")
        _, still_pending = await asyncio.wait(pending, timeout=3 * self.config.kill_grace_s + 1)
        for task in still_pending:
            task.cancel()  # the executor kills the process group on cancel
        await asyncio.gather(*still_pending, return_exceptions=True)

    async def _on_job(self, msg: Msg) -> None:
        """Take a job, or refuse it. Refusals before the job's id is taken go only to
        the message's reply subject (the job may be forged or replayed: it must not
        write into the record of the job whose id it carries); later ones are answered
        like any result, by the job's reply route."""
        self.counters.received += 1
        if self.state is AgentState.CONNECTING:
            return  # not in the registry yet: nobody expects this agent's answer
        reply = usable_reply(self._subjects, msg.reply)
        try:
            job = decode_job(msg.data)
        except WireError as exc:
            await self._refuse(reply, "", f"invalid job message: {exc}")
            return
        if not await self._take(job, msg, reply):
            return
        if refusal := job_refusal(job, time.time(), clock_skew_s=self.config.max_clock_skew_s):
            self.counters.refused += 1
            log.warning("job %r refused: %r", job.job_id, refusal)
            await self._deliver(job, reply, self._result(job.job_id, ResultStatus.FAILED, refusal))
            return
        await self._acknowledge(job, reply)
        stop = self._stops.open(job.job_id)
        task = asyncio.create_task(self._run_job(job, reply, stop))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        task.add_done_callback(lambda _: self._stops.close(job.job_id))
        self._reporter.wake()

    async def _take(self, job: ExecJob, msg: Msg, reply: str) -> bool:
        """Whether this agent takes ``job`` (its id is then taken): it addresses this
        agent, carries a valid signature where one is required, and is new. Refusals
        here go to ``reply`` only."""
        try:
            target = parse_target(job.target)
        except TargetSyntaxError as exc:
            await self._refuse(reply, job.job_id, f"invalid job target: {exc}")
            return False
        if not target.matches(self.hostname, self.config.labels):
            return False
        if self._verifier is not None and (
            refusal := self._signed_job_refusal(self._verifier, job, target, msg)
        ):
            await self._refuse(reply, job.job_id, refusal)
            return False
        return not await self._take_or_refuse_repeat(job, reply)

    async def _acknowledge(self, job: ExecJob, reply: str) -> None:
        """Say that this agent took the job, where its reply route says."""
        ack = encode(ExecAck(job_id=job.job_id, hostname=self.hostname))
        if job.reply_route is ReplyRoute.RECORD:
            await self._send(self._subjects.ack(job.job_id, self.hostname), ack)
        elif reply:
            await self._send(reply, ack)

    def _signed_job_refusal(
        self, verifier: SignatureVerifier, job: ExecJob, target: Target, msg: Msg
    ) -> str | None:
        """With signatures required: why this job must not run, or None when it may."""
        try:
            verifier.verify(msg.data, msg.headers)
        except SignatureRejected as exc:
            return str(exc)
        expected_subject = self._subjects.exec_target(target)
        if msg.subject != expected_subject:
            # The signature does not cover the subject: an `_any` job published
            # again on `_all` would otherwise reach every agent.
            return (
                f"replayed job: a job for {job.target!r} must arrive on {expected_subject}, "
                f"not {msg.subject}"
            )
        if job.deadline <= time.time():
            return "replayed or expired job: its deadline passed"
        if job.created_at < self._started_at - self.config.max_clock_skew_s:
            return "replayed job: created before this agent started"
        return None

    async def _take_or_refuse_repeat(self, job: ExecJob, reply: str) -> bool:
        """Take the job and return False, unless its id was taken before: then return
        True (it does not run again), after refusing it if it is a replay."""
        earlier = self._recent_jobs.take(job.job_id, job.deadline, reply)
        if earlier is None:
            return False
        self.counters.duplicates += 1
        if self._verifier is not None and reply != earlier.reply:
            # Someone else asks for the answer: a replay, not NATS delivering twice.
            await self._refuse(reply, job.job_id, "replayed job: this job id was taken")
        else:
            log.warning("job %r delivered again; not run twice", job.job_id)
        return True

    async def _on_cancel(self, msg: Msg) -> None:
        try:
            request = decode_cancel(msg.data)
        except WireError as exc:
            log.warning("malformed cancel request ignored: %s", exc)
            return
        reason = f"cancelled on request of {request.caller or 'unknown'}"
        if self._stops.stop(request.job_id, reason):
            log.info("job %r: %s", request.job_id, reason)

    async def _run_job(self, job: ExecJob, reply: str, stop: asyncio.Event) -> None:
        async with self._slots:
            # Leave the kill grace before the deadline, so that even a job killed
            # at its timeout answers while the requester still listens.
            remaining_s = job.deadline - time.time() - self.config.kill_grace_s
            if stop.is_set():
                reason = f"{self._stops.reason(job.job_id)} before it started"
                result = self._result(job.job_id, ResultStatus.CANCELLED, reason)
            elif remaining_s <= 0:
                result = self._result(
                    job.job_id, ResultStatus.FAILED, "expired before start: its deadline passed"
                )
            elif refusal := self._policy.refusal(job):
                self.counters.refused += 1
                result = self._result(job.job_id, ResultStatus.FAILED, refusal)
            else:
                self.counters.started += 1
                result = await self._execute(job, min(float(job.timeout_s), remaining_s), stop)
        await self._deliver(job, reply, result)

    async def _execute(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        """Run the job; a bug in the executor still yields a result, never silence."""
        try:
            result = await self._executor.run(job, timeout_s, stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %r: executor error", job.job_id)
            return self._result(job.job_id, ResultStatus.FAILED, f"agent error: {exc!r}")
        if result.status is ResultStatus.CANCELLED:
            reason = f"{self._stops.reason(job.job_id)}; process group killed"
            result = msgspec.structs.replace(result, error=reason)
        return result

    def _on_process_start(self, job: ExecJob, pid: int) -> None:
        if self._running_jobs is not None:
            self._running_jobs.started(job.job_id, pid)

    async def _refuse(self, reply: str, job_id: str, reason: str) -> None:
        self.counters.refused += 1
        log.warning("job %r refused: %r", job_id, reason)
        if reply:
            await self._send(reply, encode(self._result(job_id, ResultStatus.FAILED, reason)))

    def _result(self, job_id: str, status: ResultStatus, error: str) -> ExecResult:
        return ExecResult(job_id=job_id, hostname=self.hostname, status=status, error=error)

    async def _deliver(self, job: ExecJob, reply: str, result: ExecResult) -> None:
        """Record the result in JetStream (retried in the background until it is, see
        :mod:`agentd.recorder`); then, for the ``reply`` route, answer the reply subject
        (if any). The ``record`` route's requester reads the record.

        Recording first means that once the requester has the answer, so has the job
        record, or it will as soon as JetStream takes it.
        """
        data = await self._record(result)
        if reply and job.reply_route is ReplyRoute.REPLY:
            await self._send(reply, data)
        if self._running_jobs is not None:
            self._running_jobs.ended(job.job_id)

    async def _record(self, result: ExecResult) -> bytes:
        """Record ``result`` (see :mod:`agentd.recorder`); returns it encoded."""
        data = encode_to_fit(result, self._nc.max_payload)
        await self._results.record(
            self._subjects.result_record(result.job_id, result.hostname),
            data,
            msg_id=f"{result.job_id}/{result.hostname}",
            job_id=result.job_id,
        )
        return data

    def _live_output(self, job: ExecJob) -> LiveOutput:
        subject = self._subjects.output_record(job.job_id, self.hostname)

        async def publish(chunk: OutputChunk) -> None:
            # Best effort and unacknowledged: the result, recorded after the
            # chunks on this same connection, is the durable answer.
            await self._send(subject, encode(chunk))

        return LiveOutput(job.job_id, self.hostname, self.config.output_cap_bytes, publish)

    async def _send(self, subject: str, data: bytes) -> None:
        try:
            await self._nc.publish(subject, data)
        except nats.errors.Error as exc:
            self.counters.replies_lost += 1
            log.error("reply on %s not sent: %s", subject, exc)

    async def _heartbeat_loop(self, recorded: bool) -> None:
        """Heartbeat every interval; ``recorded`` tells whether the last one was taken."""
        while self.state is AgentState.RUNNING:
            # After a failure, try again soon: the entry may be about to expire.
            retry_s = HEARTBEAT_RETRY_S if not recorded else self.config.heartbeat_interval_s
            await asyncio.sleep(min(retry_s, self.config.heartbeat_interval_s))
            if self.state is AgentState.RUNNING:
                recorded = await self._publish_heartbeat()

    async def _publish_heartbeat(self) -> bool:
        """Set this agent's registry entry, with a TTL of three heartbeat intervals.
        Returns False (and logs) when JetStream did not take it."""
        heartbeat = Heartbeat(
            hostname=self.hostname,
            instance_id=self._instance_id,
            labels=dict(self.config.labels),
            version=__version__,
            started_at=self._started_at,
            sent_at=time.time(),
            interval_s=self.config.heartbeat_interval_s,
            jobs_running=self.jobs_running,
            load_avg=list(os.getloadavg()),
        )
        try:
            await self._records.write(
                self._subjects.registry_entry(self.hostname),
                encode(heartbeat),
                headers={MSG_TTL_HEADER: str(math.ceil(3 * self.config.heartbeat_interval_s))},
                timeout_s=self.config.connect_timeout_s,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("heartbeat not recorded: %s", exc or type(exc).__name__)
            return False
        return True

    async def _leave_registry(self) -> None:
        try:
            await self._records.write(
                self._subjects.registry_entry(self.hostname),
                b"",
                headers=KV_DELETE_HEADERS,
                timeout_s=self.config.connect_timeout_s,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("registry entry not removed: %s", exc or type(exc).__name__)

    async def _on_nats_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)

    async def _on_disconnected(self) -> None:
        if self.state is AgentState.RUNNING:
            log.warning("NATS: disconnected from %s", self.config.nats_url)

    async def _on_reconnected(self) -> None:
        log.info("NATS: reconnected to %s", self.connected_url)
        self.reconnected.set()
        await self._publish_heartbeat()
