"""A job's overall state and final result list, derived from its record and results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from schemas import ExecResult, JobRecord, ResultStatus
from schemas.api import JobState, JobSummary, JobView

ANY_PLACEHOLDER_HOSTNAME = "_any"


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
    """COMPLETED if every host completed, FAILED if none did, CANCELLED if every
    host that did not complete was cancelled, else PARTIAL."""
    statuses = [result.status for result in results]
    unfinished = [status for status in statuses if status is not ResultStatus.COMPLETED]
    if not unfinished:
        return JobState.COMPLETED
    if all(status is ResultStatus.CANCELLED for status in unfinished):
        return JobState.CANCELLED
    if len(unfinished) == len(statuses):
        return JobState.FAILED
    return JobState.PARTIAL


def job_view(record: JobRecord, recorded: list[ExecResult], now: float) -> JobView:
    """The job as ``GET /job/{id}`` shows it at time ``now``.

    Each host shows its recorded result or, failing one, the controller's ``no_reply``
    verdict (``record.no_replies``); a host whose result was recorded after such a
    verdict is listed in ``late`` with it. Before the deadline a job missing results is
    ``running``; after it, each host still missing is a ``no_reply`` result (one
    ``_any`` placeholder for an ``_any`` job that nobody took). Results of hosts the
    job was not sent to are left out, as the collector drops them. A job never
    published is ``not_published``, complete, with no results (no agent got it).
    """
    if not record.published:
        return _view(record, JobState.NOT_PUBLISHED, complete=True, results=[])
    job = record.job
    expects = None if record.expected_hosts is None else frozenset(record.expected_hosts)
    by_host = {
        result.hostname: result
        for result in recorded
        if expects is None or result.hostname in expects
    }
    if expects is None and len(by_host) > 1:
        # A host's own answer replaces the placeholder no_reply of an _any job.
        by_host.pop(ANY_PLACEHOLDER_HOSTNAME, None)
    no_replies = _no_replies(record)
    any_verdict = no_replies.get(ANY_PLACEHOLDER_HOSTNAME) if expects is None else None
    late = {
        host: verdict
        for host, result in by_host.items()
        if result.status is not ResultStatus.NO_REPLY
        and (verdict := no_replies.get(host, any_verdict)) is not None
    }
    # A verdict stands for a host that recorded nothing (for _any: while nobody did).
    decided = [] if expects is None and by_host else sorted(no_replies.keys() - by_host.keys())
    results = [*by_host.values(), *missing_results(job.job_id, decided, [], no_replies)]
    missing = _missing(expects, results)
    complete = not missing
    if not complete and now < job.deadline:
        state = JobState.RUNNING
    else:
        error = "no result recorded by the deadline"
        results += missing_results(job.job_id, missing, results, error)
        state = overall_state(results)
    results.sort(key=lambda result: result.hostname)
    return _view(record, state, complete=complete, results=results, late=late)


def _no_replies(record: JobRecord) -> dict[str, str]:
    """The controller's ``no_reply`` verdicts in ``record`` on hosts the job was sent to
    (or on ``_any``'s placeholder), with their errors."""
    sent_to = [ANY_PLACEHOLDER_HOSTNAME] if record.expected_hosts is None else record.expected_hosts
    return {host: record.no_replies[host] for host in set(record.no_replies).intersection(sent_to)}


def _missing(expects: frozenset[str] | None, results: list[ExecResult]) -> list[str]:
    """The hosts without a result; for ``_any`` (``expects`` None), the placeholder
    when nobody answered."""
    if expects is None:
        return [] if results else [ANY_PLACEHOLDER_HOSTNAME]
    return sorted(expects - {result.hostname for result in results})


def _view(
    record: JobRecord,
    state: JobState,
    *,
    complete: bool,
    results: list[ExecResult],
    late: dict[str, str] | None = None,
) -> JobView:
    job = record.job
    return JobView(
        job_id=job.job_id,
        state=state,
        complete=complete,
        target=job.target,
        command=job.command,
        args=job.args,
        cwd=job.cwd,
        timeout=job.timeout_s,
        caller=job.caller,
        created_at=job.created_at,
        deadline=job.deadline,
        expected_hosts=record.expected_hosts,
        results=results,
        late=late or {},
    )


def job_summary(record: JobRecord) -> JobSummary:
    job = record.job
    expected = record.expected_hosts
    return JobSummary(
        job_id=job.job_id,
        target=job.target,
        command=job.command,
        args=job.args,
        caller=job.caller,
        created_at=job.created_at,
        expected_hosts=None if expected is None else len(expected),
    )
