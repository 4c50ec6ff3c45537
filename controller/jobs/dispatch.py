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

An ack or result that names another job or host than its subject, or comes from a
host the job was not sent to, is dropped, logged and counted in
:attr:`Dispatcher.dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from controller.errors import NatsUnavailable
from controller.jobs.outcome import ANY_PLACEHOLDER_HOSTNAME, missing_results
from runtime.signing import JobSigner
from runtime.streamwriter import is_no_responders
from schemas import (
    CancelRequest,
    ExecAck,
    ExecJob,
    ExecResult,
    ResultStatus,
    Subjects,
    Target,
    TargetKind,
    WireError,
    decode_ack_from,
    decode_reply,
    decode_result_from,
    encode,
)
from schemas.untrusted import shown

log = logging.getLogger("nexec.controller.dispatch")

RESULT_CONSUMER_HEARTBEAT_S = 1.0
"""Idle heartbeat of the result consumer; after two missed, nats-py recreates it."""


@dataclass(frozen=True, slots=True)
class Collected:
    results: list[ExecResult]
    """Sorted by hostname; ``no_reply`` for every host given up on."""
    complete: bool
    """False when the wait ended before every expected host was decided."""


class Collector:
    """The replies to one job.

    ``expected`` names the agents that must answer; ``None`` means exactly one
    answer from any agent (``_any``). Only expected agents may answer (see
    :meth:`expects`): an agent takes jobs only after its first heartbeat, so one
    that answers was in the registry when the job was published, but for the
    instant before a controller sees a new agent's first heartbeat.
    """

    def __init__(
        self, job_id: str, expected: frozenset[str] | None, *, single_receiver: bool
    ) -> None:
        """``single_receiver``: at most one agent receives the job (a host, or
        ``_any``'s queue group), so only that agent could answer on its reply subject."""
        self.job_id = job_id
        self.expected = expected
        self.single_receiver = single_receiver
        self.results: dict[str, ExecResult] = {}
        self.acked: set[str] = set()
        self.heard_at: dict[str, float] = {}
        """Acknowledged host -> when (``time.monotonic``) it was last heard of: its ack,
        then each running report listing this job."""
        self.not_delivered: dict[str, str] = {}
        """Hosts given up on before the deadline, with the reason."""
        self.unverified: dict[str, str] = {}
        """Claimed hostname -> what an answer on the reply subject said (not trusted)."""
        self.done = asyncio.Event()
        self._waiting: set[str] = set(expected) if expected is not None else set()
        """Expected hosts neither answered nor given up (kept up to date, so that each
        reply costs O(1) however large the fleet)."""

    def expects(self, hostname: str) -> bool:
        """Whether ``hostname`` may answer this job."""
        return self.expected is None or hostname in self.expected

    def add_ack(self, ack: ExecAck) -> None:
        self.acked.add(ack.hostname)
        self.heard_at[ack.hostname] = time.monotonic()

    def heard(self, hostname: str, now: float) -> None:
        """``hostname`` reported this job running (only an acknowledged host counts)."""
        if hostname in self.heard_at:
            self.heard_at[hostname] = now

    def silent(self, now: float, silent_s: float) -> list[tuple[str, float]]:
        """Acknowledged hosts still waited for and not heard of for ``silent_s``, with
        when each was last heard of."""
        return [
            (host, self.heard_at[host])
            for host in self._pending() & self.acked
            if host in self.heard_at and now - self.heard_at[host] >= silent_s
        ]

    def give_up_lost(self, hostname: str, reason: str) -> None:
        """Give up a host that acknowledged and then fell silent (``no_reply``)."""
        if hostname in self._pending():
            self.not_delivered[hostname] = reason
            self._waiting.discard(hostname)
            self._check_done()

    def add_result(self, result: ExecResult) -> None:
        if result.hostname in self.results:
            log.warning("job %r: second result from %r ignored", self.job_id, result.hostname)
            return
        self.results[result.hostname] = result
        self.not_delivered.pop(result.hostname, None)
        self._waiting.discard(result.hostname)
        self._check_done()

    def note_unverified(self, claimed_host: str, text: str) -> None:
        """Keep what an answer on the job's reply subject said (it proves nothing of who
        sent it), to explain a ``no_reply``: e.g. an agent refusing the job's signature."""
        self.unverified.setdefault(claimed_host, text)

    def no_responders(self) -> None:
        """NATS said nobody is subscribed; believed only for a single receiver (an
        agent that received an ``_all`` or label job can forge the status)."""
        if self.single_receiver:
            self.give_up_unacknowledged("no agent is subscribed (NATS: no responders)")

    def give_up_unacknowledged(self, reason: str) -> None:
        """Give up every expected host that neither acknowledged nor answered."""
        for host in self._pending() - self.acked:
            note = self.unverified.get(host)
            if note is None and self.expected is None and self.unverified:
                note = next(iter(self.unverified.values()))
            self.not_delivered[host] = (
                reason
                if note is None
                else f"{reason}; an unverified answer on the reply subject said: {note}"
            )
            self._waiting.discard(host)
        self._check_done()

    def _pending(self) -> set[str]:
        """Hosts still waited for. For ``_any``: the host that acknowledged, or a
        placeholder until one does."""
        if self.expected is None:
            if self.results or self.not_delivered:  # the placeholder, or the lost host
                return set()
            return set(self.acked) or {ANY_PLACEHOLDER_HOSTNAME}
        return self._waiting

    def _check_done(self) -> None:
        if not self._pending():
            self.done.set()

    def collected(self, *, deadline_passed: bool, waited_s: float) -> Collected:
        """The results so far, with ``no_reply`` for hosts given up on (and, once the
        deadline passed, for every host still missing)."""
        given_up = [
            ExecResult(
                job_id=self.job_id, hostname=host, status=ResultStatus.NO_REPLY, error=reason
            )
            for host, reason in self.not_delivered.items()
        ]
        results = [*self.results.values(), *given_up]
        pending = self._pending()
        if deadline_passed and pending:
            took = f"acknowledged, but no result recorded within {waited_s:g}s"
            results += missing_results(self.job_id, pending & self.acked, results, took)
            silent = f"no reply within {waited_s:g}s"
            results += missing_results(self.job_id, pending - self.acked, results, silent)
            pending = set()
        return Collected(sorted(results, key=lambda r: r.hostname), complete=not pending)


Recorder = Callable[[list[ExecResult]], Awaitable[None]]
AnswerT = TypeVar("AnswerT", ExecAck, ExecResult)


class Dispatcher:
    """Sends jobs on NATS and gathers their replies.

    Collection runs in its own task until every expected host is decided or
    the deadline passes, even when the HTTP answer went out earlier
    (``?wait``); then the hosts it gave up on are recorded as ``no_reply``.
    """

    def __init__(
        self, subjects: Subjects, record_no_replies: Recorder, signer: JobSigner | None = None
    ) -> None:
        self._subjects = subjects
        self._record_no_replies = record_no_replies
        self._signer = signer
        """Signs every job published (agents with trusted signers refuse unsigned ones)."""
        self._collectors: dict[str, Collector] = {}
        self._collecting: set[asyncio.Task[Collected]] = set()
        self._inbox_prefix = ""
        self._nc: Client | None = None
        self._listening = False
        self._results: JetStreamContext.PushSubscription | None = None
        self.dropped: Counter[str] = Counter()
        """Acks and results dropped, by reason (another host's or job's, unexpected host,
        malformed, an answer on the reply subject)."""

    @property
    def collectors(self) -> Mapping[str, Collector]:
        """The jobs being collected, by job id."""
        return self._collectors

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
            await nc.subscribe(f"{self._inbox_prefix}.*", cb=self._on_inbox)
            await nc.subscribe(self._subjects.acks_all(), cb=self._on_ack)
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
            cb=self._on_result,
            ordered_consumer=True,
            idle_heartbeat=RESULT_CONSUMER_HEARTBEAT_S,
            deliver_policy=deliver,
        )

    async def close(self) -> None:
        """Stop collecting (on shutdown); unanswered hosts stay to be derived at the deadline."""
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
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise NatsUnavailable("the controller is not connected to NATS")
        collector = Collector(
            job.job_id, expected, single_receiver=target.kind in (TargetKind.HOST, TargetKind.ANY)
        )
        self._collectors[job.job_id] = collector
        payload = encode(job)
        try:
            await nc.publish(
                self._subjects.exec_target(target),
                payload,
                reply=f"{self._inbox_prefix}.{job.job_id}",
                headers=self._signer.headers(payload) if self._signer else None,
            )
        except nats.errors.Error as exc:
            del self._collectors[job.job_id]
            raise NatsUnavailable(f"publishing the job failed: {exc}") from exc
        task = asyncio.create_task(self._collect(collector, deadline_s, delivery_timeout_s))
        self._collecting.add(task)
        task.add_done_callback(self._collecting.discard)
        if return_after_s is None:
            return await asyncio.shield(task)
        try:
            return await asyncio.wait_for(asyncio.shield(task), return_after_s)
        except TimeoutError:
            return collector.collected(deadline_passed=False, waited_s=deadline_s)

    async def _collect(
        self, collector: Collector, deadline_s: float, delivery_timeout_s: float
    ) -> Collected:
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
            del self._collectors[collector.job_id]
        collected = collector.collected(
            deadline_passed=not collector.done.is_set(), waited_s=deadline_s
        )
        no_replies = [r for r in collected.results if r.status is ResultStatus.NO_REPLY]
        if no_replies:
            await self._record_no_replies(no_replies)
        return collected

    async def cancel(self, job_id: str, caller: str) -> None:
        """Broadcast a cancel request for ``job_id`` to every agent.

        Raises:
            NatsUnavailable: NATS is not connected, or the publish failed.
        """
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise NatsUnavailable("the controller is not connected to NATS")
        try:
            await nc.publish(
                self._subjects.cancel(), encode(CancelRequest(job_id=job_id, caller=caller))
            )
        except nats.errors.Error as exc:
            raise NatsUnavailable(f"publishing the cancel request failed: {exc}") from exc

    def _drop(self, job_id: str, hostname: str, reason: str, detail: object) -> None:
        """Count and log a dropped message; ``hostname`` may be untrusted (it is shown
        short), ``detail`` must not be (callers cut untrusted text with ``shown``)."""
        self.dropped[reason] += 1
        log.warning("job %r: %s from %s dropped: %s", job_id, reason, shown(hostname), detail)

    def _answer(
        self,
        msg: Msg,
        parse: Callable[[str], tuple[str, str]],
        decode: Callable[..., AnswerT],
        kind: str,
    ) -> tuple[Collector, AnswerT] | None:
        """The collector waiting for the host that ``msg``'s subject names, and what
        it said; None when no collector waits here, or when it was dropped (counted)."""
        try:
            job_id, hostname = parse(msg.subject)
        except ValueError:
            return None  # not a subject this subscription can carry
        collector = self._collectors.get(job_id)
        if collector is None:
            return None  # another controller's job, or one whose collection ended
        if not collector.expects(hostname):
            self._drop(job_id, hostname, f"{kind} of a host the job was not sent to", "")
            return None
        try:
            return collector, decode(msg.data, job_id=job_id, hostname=hostname)
        except WireError as exc:
            self._drop(job_id, hostname, f"invalid {kind}", exc)
            return None

    async def _on_ack(self, msg: Msg) -> None:
        if answer := self._answer(msg, self._subjects.parse_ack, decode_ack_from, "ack"):
            collector, ack = answer
            collector.add_ack(ack)

    async def _on_result(self, msg: Msg) -> None:
        parse = self._subjects.parse_host_record
        if answer := self._answer(msg, parse, decode_result_from, "result"):
            collector, result = answer
            collector.add_result(result)

    async def _on_inbox(self, msg: Msg) -> None:
        """NATS's "no responders" status gives up every host at once. Anything else
        here was sent by an agent on the job's reply subject, which proves nothing of
        who sent it: logged (it may explain a ``no_reply``: a refused signature, or an
        agent too old for the ``record`` route) and dropped.

        Any agent that received the job may publish here, a status header included.
        So both are believed only when at most one agent receives the job (a host,
        ``_any``): for ``_all`` and labels, a forged status would give up hosts that
        run the command, and the delivery timeout decides instead."""
        job_id = msg.subject.rsplit(".", 1)[-1]
        collector = self._collectors.get(job_id)
        if collector is None:
            return
        if is_no_responders(msg):
            collector.no_responders()
            return
        try:
            reply = decode_reply(msg.data)
        except WireError as exc:
            self._drop(job_id, "?", "answer on the reply subject", exc)
            return
        said = shown(reply.error) if isinstance(reply, ExecResult) and reply.error else None
        detail = "an ack" if isinstance(reply, ExecAck) else said
        self._drop(job_id, reply.hostname, "answer on the reply subject", detail)
        if said is not None and collector.single_receiver:
            collector.note_unverified(reply.hostname, said)
