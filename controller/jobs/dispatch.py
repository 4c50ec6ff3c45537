"""Publishing jobs and collecting the agents' acknowledgements and results.

Jobs go out with the ``record`` reply route: an agent acknowledges on its own ack
subject and records its result on its own record subject, both carrying its
hostname's token, which the NATS permissions let only that host publish. So a host's
identity comes from the subject, never from the payload. Per controller, one
subscription takes every ack, one ordered JetStream consumer every result as the
results stream stores it (so the caller never sees a result that is not recorded),
and one wildcard inbox the "no responders" status of each job's publish. Each job
gets a :class:`Collector`. A host must acknowledge within the delivery timeout or
it is given up as ``no_reply`` (a dead agent costs seconds, not the command's
timeout); a host that acknowledged is waited for until the deadline, unless it
falls silent mid-job (:mod:`controller.jobs.agent_watch`).

Each answer reaches its collector through :mod:`controller.jobs.answers`, which drops
(and counts in :attr:`Dispatcher.dropped`) what names another job or host than its
subject, or comes from a host the job was not sent to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from controller.errors import NatsUnavailable, nats_errors
from controller.jobs.answers import AnswerRouter
from controller.jobs.collector import (
    Collected,
    Collector,
    host_key,
    is_routed,
    release_route,
)
from controller.jobs.copies import CopyCollection
from controller.jobs.counters import DispatchCounters
from runtime.signing import JobSigner
from schemas.messages import CancelRequest, ExecAck, ExecJob, ExecResult, JobRecord, encode
from schemas.subjects import Subjects
from schemas.targets import Target, TargetKind

Recorder = Callable[[list[ExecResult]], Awaitable[None]]
TakerRecorder = Callable[[str, str], Awaitable[None]]
"""Records the host that took an ``_any`` job (job id, hostname); never raises."""


class Dispatcher:
    """Sends jobs on NATS and gathers their replies.

    Collection runs in its own task until every expected host is decided or
    the deadline passes, even when the HTTP answer went out earlier
    (``?wait``); then the hosts it gave up on are recorded as ``no_reply``.
    """

    def __init__(
        self,
        subjects: Subjects,
        record_no_replies: Recorder,
        signer: JobSigner | None = None,
        record_taker: TakerRecorder | None = None,
        *,
        results_heartbeat_s: float,
    ) -> None:
        """``record_taker``: how the host that took an ``_any`` job is written in its
        record when another host recorded a result for it meanwhile (None: not written).
        ``results_heartbeat_s``: the idle heartbeat of the results consumer; nats-py
        makes the consumer again after a check (every two heartbeats) found none."""
        self._subjects = subjects
        self._results_heartbeat_s = results_heartbeat_s
        self._record_no_replies = record_no_replies
        self._record_taker = record_taker
        self._signer = signer
        """Signs every job published (agents with trusted signers refuse unsigned ones)."""
        self._collectors: dict[str, Collector] = {}
        self._collecting: set[asyncio.Task[Collected]] = set()
        self._copies: set[CopyCollection] = set()
        """Rollout hosts' copies being collected (:meth:`start_copy`)."""
        self._inbox_prefix = ""
        self._nc: Client | None = None
        self._listening = False
        self._results: JetStreamContext.PushSubscription | None = None
        self._answers = AnswerRouter(subjects, self._collectors)
        self.dropped = self._answers.dropped
        """Acks and results dropped, by reason (:class:`AnswerRouter`)."""
        self.counters = DispatchCounters()
        """Every host's outcome and each collection's time, counted once ($SRV.STATS
        and /metrics read them)."""

    @property
    def copies_collecting(self) -> int:
        """Rollout hosts' copies being collected (:meth:`start_copy`)."""
        return len(self._copies)

    @property
    def collectors(self) -> Mapping[str, Collector]:
        """The jobs being collected, by job id."""
        return self._collectors

    def taken_by(self, job_id: str) -> str | None:
        """The host that took the ``_any`` job ``job_id``, while this controller collects
        it (None: not collected here, not an ``_any`` job, or no host took it yet)."""
        collector = self._collectors.get(job_id)
        return None if collector is None else collector.taken_by

    def as_collected(self, record: JobRecord) -> JobRecord:
        """``record``, naming the host that took its ``_any`` job while this controller
        collects it (the record names it only after the collection, and only when
        another host answered too): what is read of the job then agrees with the answer
        its caller gets, not with a rival's result recorded first (docs/security.md)."""
        if record.expected_hosts is not None or record.taken_by is not None:
            return record
        taker = self.taken_by(record.job.job_id)
        return record if taker is None else msgspec.structs.replace(record, taken_by=taker)

    async def attach(self, nc: Client, js: JetStreamContext) -> None:
        """Listen for acks, results and "no responders" on a connected client (once
        per process; later calls do nothing). Call it after the results stream exists.

        Raises:
            nats.errors.Error, TimeoutError: NATS or JetStream failed; call it again.
        """
        if self._nc is not None:
            return
        if not self._listening:
            self._inbox_prefix = nc.new_inbox()
            await nc.subscribe(
                self._subjects.job_replies_all(self._inbox_prefix), cb=self._answers.on_inbox
            )
            await nc.subscribe(self._subjects.acks_all(), cb=self._answers.on_ack)
            self._listening = True
        await self._read_results(js)
        self._nc = nc

    async def read_results_again(self, js: JetStreamContext) -> None:
        """Read results from a results stream that was made again (its sequence numbers
        start over, so the old consumer would wait for numbers it will not see soon).

        Raises:
            nats.errors.Error, TimeoutError: JetStream failed; call it again.
        """
        old, self._results = self._results, None
        if old is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await old.unsubscribe()
        # All of it: every message in a stream made again is new (agents retrying may
        # have written in it before this consumer was made).
        await self._read_results(js, DeliverPolicy.ALL)

    async def _read_results(
        self, js: JetStreamContext, deliver: DeliverPolicy = DeliverPolicy.NEW
    ) -> None:
        """One ordered consumer of every new result (not output chunks)."""
        self._results = await js.subscribe(
            self._subjects.result_records_all(),
            stream=self._subjects.results_stream(),
            cb=self._answers.on_result,
            ordered_consumer=True,
            idle_heartbeat=self._results_heartbeat_s,
            deliver_policy=deliver,
        )

    async def close(self) -> None:
        """Stop collecting (on shutdown); unanswered hosts stay to be derived at the deadline."""
        for copy in list(self._copies):
            copy.cancel()
        for task in list(self._collecting):
            task.cancel()
        await asyncio.gather(*self._collecting, return_exceptions=True)

    async def run(
        self,
        job: ExecJob,
        target: Target,
        expected: frozenset[str] | None,
        *,
        deadline_s: float,
        delivery_timeout_s: float,
        return_after_s: float | None,
    ) -> Collected:
        """Publish ``job``; wait for its replies until every expected host is decided or
        ``deadline_s`` passes (the rest become ``no_reply``), or, when ``return_after_s``
        is given, at most that long (the rest are left out and ``complete`` is False).

        Raises:
            NatsUnavailable: NATS is not connected, or the publish failed.
        """
        single = target.kind in (TargetKind.HOST, TargetKind.ANY)
        collector = Collector(job.job_id, expected, single_receiver=single)
        await self._publish(job, self._subjects.exec_target(target), collector)
        task = asyncio.create_task(
            self._collect(collector, deadline_s, delivery_timeout_s, time.perf_counter())
        )
        self._collecting.add(task)
        task.add_done_callback(self._collecting.discard)
        if return_after_s is None:
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), return_after_s)
        except TimeoutError:
            return collector.collected(deadline_passed=False, waited_s=deadline_s)

    async def start_copy(
        self,
        copy: ExecJob,
        *,
        deadline_s: float,
        delivery_timeout_s: float,
        on_settled: Callable[[], None] | None = None,
    ) -> asyncio.Future[ExecResult]:
        """Publish one host's copy of a rollout's job (``copy.target`` the host) and
        collect it apart from the other hosts' copies of the same job id, by callbacks
        (:mod:`controller.jobs.copies`). The future's result: the host's result, or its
        ``no_reply`` verdict once recorded; ``on_settled`` is called right after it
        is settled. The "no responders" status is not used for a copy (the delivery
        timeout decides).

        Raises:
            NatsUnavailable: NATS is not connected, or the publish failed.
        """
        host = copy.target
        key = host_key(copy.job_id, host)
        collector = Collector(copy.job_id, frozenset({host}), single_receiver=True, key=key)
        await self._publish(copy, self._subjects.exec_host(host), collector)
        collection = CopyCollection(
            collector,
            deadline_s=deadline_s,
            delivery_timeout_s=delivery_timeout_s,
            record=self._record_no_replies,
            routes=self._collectors,
            live=self._copies,
            decided=lambda result, took_ns: self.counters.collected([result], took_ns),
            on_settled=on_settled,
        )
        return collection.result

    async def _publish(self, job: ExecJob, subject: str, collector: Collector) -> None:
        """Route ``job``'s answers to ``collector``, then publish it on ``subject``.

        Raises:
            NatsUnavailable: NATS is not connected, or the publish failed (nothing routed).
        """
        nc = self._nc
        if nc is None or not nc.is_connected:
            self.counters.publish_failed("the controller is not connected to NATS")
            raise NatsUnavailable("the controller is not connected to NATS")
        self._collectors[collector.key] = collector
        payload = encode(job)
        try:
            with nats_errors("publishing the job"):
                await nc.publish(
                    subject,
                    payload,
                    reply=self._subjects.job_reply(self._inbox_prefix, job.job_id),
                    headers=self._signer.headers(payload) if self._signer else None,
                )
        except NatsUnavailable as exc:
            del self._collectors[collector.key]
            self.counters.publish_failed(exc.details)
            raise

    async def follow(
        self,
        job_id: str,
        hostname: str,
        *,
        deadline_s: float,
        recorded: Callable[[], Awaitable[ExecResult | None]],
    ) -> Collected:
        """Wait for the answer of a host whose copy of a rollout's job another controller
        published (a takeover): until its result is recorded (``recorded`` reads one
        stored already), the agent is lost (it is watched as if it had acknowledged),
        or ``deadline_s`` passes. Never publishes. A result recorded already was decided,
        and counted, by the controller collecting it then (this one, or one that
        stopped): the host is counted here only when this collection decides it.
        Cancelled while the host is undecided (its rollout lost the lease), the
        collection stops: the rollout's driver now decides the host, and counts it.

        Raises:
            NatsUnavailable: ``recorded`` could not read the results stream.
        """
        collector = Collector(
            job_id, frozenset({hostname}), single_receiver=True, key=host_key(job_id, hostname)
        )
        collector.add_ack(ExecAck(job_id=job_id, hostname=hostname))
        self._collectors[collector.key] = collector
        try:
            stored = await recorded()
        except BaseException:
            del self._collectors[collector.key]
            raise
        if stored is not None:
            collector.add_result(stored)
        collect = self._collect(collector, deadline_s, deadline_s, None, count=stored is None)
        task = asyncio.create_task(collect)
        self._collecting.add(task)
        task.add_done_callback(self._collecting.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if is_routed(self._collectors, collector):  # undecided: stop
                task.cancel()
            raise

    async def _collect(
        self,
        collector: Collector,
        deadline_s: float,
        delivery_timeout_s: float,
        published_at: float | None,
        *,
        count: bool = True,
    ) -> Collected:
        """Wait until every host is decided or the deadline passed; record the verdicts.
        ``published_at``: the job's publish (``time.perf_counter``), for the metric of a
        whole job's collection; None for a host followed after a takeover. ``count``:
        whether the hosts' outcomes are counted (not when they were decided before)."""
        began_ns = time.perf_counter_ns()
        delivery_timer = asyncio.get_running_loop().call_later(
            delivery_timeout_s,
            collector.give_up_unacknowledged,
            f"not acknowledged within {delivery_timeout_s:g}s",
        )
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline_s):
                    await collector.done.wait()
        finally:
            delivery_timer.cancel()
            release_route(self._collectors, collector)
        collected = collector.collected(
            deadline_passed=not collector.done.is_set(), waited_s=deadline_s
        )
        decided = collected.results if count else []
        self.counters.collected(decided, time.perf_counter_ns() - began_ns)
        if published_at is not None:
            self.counters.job_collected(time.perf_counter() - published_at)
        no_replies = collector.verdicts(collected)
        if no_replies:
            await self._record_no_replies(no_replies)
        if collector.rivals and collector.taken_by and self._record_taker is not None:
            await self._record_taker(collector.job_id, collector.taken_by)
        return collected

    async def cancel(self, job_id: str, caller: str) -> None:
        """Broadcast a cancel request for ``job_id`` to every agent.

        Raises:
            NatsUnavailable: NATS is not connected, or the publish failed.
        """
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise NatsUnavailable("the controller is not connected to NATS")
        with nats_errors("publishing the cancel request"):
            await nc.publish(
                self._subjects.cancel(), encode(CancelRequest(job_id=job_id, caller=caller))
            )
