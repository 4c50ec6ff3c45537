"""Collecting one job's acknowledgements and results: who has answered, who was given
up and why, and when collection is done (by the outcome rule of
:mod:`controller.jobs.outcome`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, MutableMapping, Set
from dataclasses import dataclass

from controller.jobs.outcome import Outcome, missing_results
from runtime.logs import log_fields, log_result
from schemas.messages import ExecAck, ExecResult, ResultStatus

log = logging.getLogger("nexec.controller.dispatch")


@dataclass(frozen=True, slots=True)
class Collected:
    results: list[ExecResult]
    """Sorted by hostname; ``no_reply`` for every host given up on."""
    complete: bool
    """False when the wait ended before every expected host was decided."""


def host_key(job_id: str, hostname: str) -> str:
    """The key of a collection of one host's copy of a job (a rollout sends each host
    its own copy, with the same job id): ``job_id/hostname``, which no job id is."""
    return f"{job_id}/{hostname}"


def is_routed(routes: Mapping[str, Collector], collector: Collector) -> bool:
    """Whether ``routes`` still sends ``collector``'s answers to it (a later collection
    of the same key, e.g. a host followed again after a takeover, may have taken its
    place)."""
    return routes.get(collector.key) is collector


def release_route(routes: MutableMapping[str, Collector], collector: Collector) -> None:
    """Take ``collector`` out of ``routes``, unless another took its place there."""
    if is_routed(routes, collector):
        del routes[collector.key]


def collector_for(
    collectors: Mapping[str, Collector], job_id: str, hostname: str
) -> Collector | None:
    """The collection waiting for ``hostname``'s answer to ``job_id``: the job's, or
    that host's copy's (a rollout's); None when none waits."""
    return collectors.get(job_id) or collectors.get(host_key(job_id, hostname))


class Collector:
    """The replies to one job.

    ``expected`` names the agents that must answer; ``None`` means exactly one
    answer from any agent (``_any``): the agent that took it, the first to
    acknowledge (or to answer, before any acknowledged). Only expected agents may
    answer (see :meth:`expects`): an agent takes jobs only after its first heartbeat,
    so one that answers was in the registry when the job was published, but for the
    instant before a controller sees a new agent's first heartbeat.
    """

    def __init__(
        self,
        job_id: str,
        expected: frozenset[str] | None,
        *,
        single_receiver: bool,
        key: str | None = None,
    ) -> None:
        """``single_receiver``: at most one agent receives the job (a host, or
        ``_any``'s queue group), so only that agent could answer on its reply subject.
        ``key``: where the dispatcher keeps it (the job id, or :func:`host_key`)."""
        self.job_id = job_id
        self.key = key or job_id
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
        self.rivals: set[str] = set()
        """For ``_any``: hosts that did not take the job and recorded a result for it
        (dropped; the job record then names the host that took it)."""
        self.done = asyncio.Event()
        self.on_done: Callable[[], None] | None = None
        """Called once, when every expected host is decided (for a collection that
        has no task of its own waiting on :attr:`done`)."""
        self._outcome = Outcome(expected)

    @property
    def taken_by(self) -> str | None:
        """For ``_any``: the host that took the job, once one did."""
        return self._outcome.taken_by

    def expects(self, hostname: str) -> bool:
        """Whether ``hostname`` may answer this job (for ``_any``: until one host took
        it, any; then that host only)."""
        return self._outcome.accepts(hostname)

    def add_ack(self, ack: ExecAck) -> None:
        """An acknowledgement of a host :meth:`expects` (for ``_any``, it may take it)."""
        self._outcome.take(ack.hostname)
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
            self._outcome.decide(hostname)
            self._check_done()

    def add_result(self, result: ExecResult) -> None:
        """A result of a host :meth:`expects` (for ``_any``, it may take it)."""
        self._outcome.take(result.hostname)
        if result.hostname in self.results:
            log.warning(
                "job %r: second result from %r ignored",
                self.job_id,
                result.hostname,
                extra=log_fields(job_id=self.job_id, hostname=result.hostname),
            )
            return
        self.results[result.hostname] = result
        log_result(log, result)
        self.not_delivered.pop(result.hostname, None)
        self._outcome.decide(result.hostname)
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
            self._outcome.decide(host)
        self._check_done()

    def _pending(self) -> Set[str]:
        """Hosts still waited for. For ``_any``: the host that acknowledged, or the
        placeholder until one does."""
        return self._outcome.missing(taken_by=self.acked)

    def _check_done(self) -> None:
        if not self._pending() and not self.done.is_set():
            self.done.set()
            if self.on_done is not None:
                self.on_done()

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

    def verdicts(self, collected: Collected) -> list[ExecResult]:
        """The controller's ``no_reply`` verdicts among ``collected``'s results, to be
        recorded (a host's own ``no_reply`` is its answer, recorded by the host)."""
        return [
            result
            for result in collected.results
            if result.status is ResultStatus.NO_REPLY and result.hostname not in self.results
        ]
