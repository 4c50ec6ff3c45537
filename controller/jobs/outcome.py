"""The one rule of a job's outcome: which hosts must answer, which are still missing,
when the job is complete, and how an ``_any`` job's placeholder works. Collection
(:mod:`controller.jobs.collector`), job views (:mod:`controller.jobs.views`) and live
output (:mod:`controller.jobs.live`) all decide through :class:`Outcome`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set

from schemas.api import JobState
from schemas.messages import ExecResult, ResultStatus

ANY_PLACEHOLDER_HOSTNAME = "_any"
"""The hostname of an ``_any`` job's ``no_reply`` when no agent took it."""
ROLLOUT_CANCELLED_BY = "rollout cancelled by "
"""How the error of a host a cancelled rollout skipped begins (then the key's name)."""


class Outcome:
    """Which of a job's hosts are decided (answered, or given up by the controller).

    ``expected`` names the hosts that must answer; None means an ``_any`` job, which
    one host answers: the first that took it (acknowledged it, or answered before any
    host acknowledged), :attr:`taken_by`; an answer of any other host never counts
    (any agent that learns the job id can write a result on its own subject). Until
    one takes it, the placeholder :data:`ANY_PLACEHOLDER_HOSTNAME` stands for it.
    Deciding a host costs O(1), so a collection stays cheap however large the fleet.
    """

    def __init__(self, expected: Iterable[str] | None, *, taken_by: str | None = None) -> None:
        """``taken_by``: for ``_any``, the host known to have taken the job, if any."""
        self.expected = None if expected is None else frozenset(expected)
        self._undecided: set[str] = set() if self.expected is None else set(self.expected)
        self._any_decided = False
        self.taken_by = taken_by
        """For ``_any``: the host that took the job (the first :meth:`take` named)."""

    def accepts(self, hostname: str) -> bool:
        """Whether ``hostname`` may answer this job (a result from another host, one the
        job was not sent to or, for ``_any``, one that did not take it, never counts)."""
        if self.expected is None:
            return self.taken_by in (None, hostname) or hostname == ANY_PLACEHOLDER_HOSTNAME
        return hostname in self.expected

    def take(self, hostname: str) -> bool:
        """``hostname`` acknowledged or answered: for ``_any``, the first host to do so
        takes the job (never the placeholder). Whether its answers count (:meth:`accepts`)."""
        if self.expected is None and self.taken_by is None and hostname != ANY_PLACEHOLDER_HOSTNAME:
            self.taken_by = hostname
        return self.accepts(hostname)

    def decide(self, hostname: str) -> None:
        """``hostname`` has its answer, or the controller's verdict."""
        if self.expected is None:
            self._any_decided = True
        else:
            self._undecided.discard(hostname)

    def missing(self, *, taken_by: Set[str] = frozenset()) -> Set[str]:
        """The hosts still undecided. For ``_any``: nothing once any host (or the
        placeholder) is decided; else the hosts in ``taken_by`` (those that
        acknowledged it), or the placeholder while none has."""
        if self.expected is None:
            if self._any_decided:
                return frozenset()
            return taken_by or {ANY_PLACEHOLDER_HOSTNAME}
        return self._undecided

    @property
    def complete(self) -> bool:
        return not self.missing()

    def shown(self, results: Iterable[ExecResult]) -> dict[str, ExecResult]:
        """The results that count, by host, from ``results`` in the order recorded:
        those of hosts the job was sent to. For ``_any``, those of the host that took
        it (:attr:`taken_by` or, unknown, the first host recorded), whose own answer
        replaces the placeholder's ``no_reply``."""
        if self.expected is not None:
            return {r.hostname: r for r in results if r.hostname in self.expected}
        results = list(results)
        taker = self.taken_by or next(
            (r.hostname for r in results if r.hostname != ANY_PLACEHOLDER_HOSTNAME), None
        )
        by_host = {
            r.hostname: r for r in results if r.hostname in (taker, ANY_PLACEHOLDER_HOSTNAME)
        }
        if len(by_host) > 1:
            by_host.pop(ANY_PLACEHOLDER_HOSTNAME, None)
        return by_host


def missing_results(
    job_id: str,
    expected: Iterable[str],
    results: Iterable[ExecResult],
    error: str | Mapping[str, str],
) -> list[ExecResult]:
    """A ``no_reply`` result for every expected host without a result, with ``error``
    (or, given a mapping, the host's own error)."""
    answered = {result.hostname for result in results}
    return [
        ExecResult(
            job_id=job_id,
            hostname=host,
            status=ResultStatus.NO_REPLY,
            error=error if isinstance(error, str) else error[host],
        )
        for host in sorted(set(expected) - answered)
    ]


def overall_state(results: Iterable[ExecResult]) -> JobState:
    """COMPLETED if every host completed; STOPPED if a rollout stopped by its failures
    skipped hosts; CANCELLED if every host that did not complete was cancelled (or
    skipped by a cancelled rollout); FAILED if none completed; else PARTIAL."""
    results = list(results)
    unfinished = [result for result in results if result.status is not ResultStatus.COMPLETED]
    if not unfinished:
        return JobState.COMPLETED
    skipped = [result for result in unfinished if result.status is ResultStatus.SKIPPED]
    if any(not (result.error or "").startswith(ROLLOUT_CANCELLED_BY) for result in skipped):
        return JobState.STOPPED
    if all(result.status in _CANCELLED for result in unfinished):
        return JobState.CANCELLED
    if len(unfinished) == len(results):
        return JobState.FAILED
    return JobState.PARTIAL


_CANCELLED = (ResultStatus.CANCELLED, ResultStatus.SKIPPED)
