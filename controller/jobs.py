"""A job's overall state and final result list, derived from its record and results."""

from __future__ import annotations

from collections.abc import Iterable

from schemas import ExecResult, JobRecord, ResultStatus
from schemas.api import JobState, JobSummary, JobView

ANY_PLACEHOLDER_HOSTNAME = "_any"


def missing_results(
    job_id: str, expected: Iterable[str], results: Iterable[ExecResult], error: str
) -> list[ExecResult]:
    """A ``no_reply`` result for every expected host without a result."""
    answered = {result.hostname for result in results}
    return [
        ExecResult(job_id=job_id, hostname=host, status=ResultStatus.NO_REPLY, error=error)
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

    Before the deadline a job missing results is ``running``; after it, each
    missing host is a ``no_reply`` result (one ``_any`` placeholder for an
    ``_any`` job that nobody took). Results of hosts the job was not sent to are
    left out, as the collector drops them. A job never published is
    ``not_published``, complete, with no results (no agent got it).
    """
    if not record.published:
        return _view(record, JobState.NOT_PUBLISHED, complete=True, results=[])
    job = record.job
    expected = record.expected_hosts
    expects = None if expected is None else frozenset(expected)
    by_host = {
        result.hostname: result
        for result in recorded
        if expects is None or result.hostname in expects
    }
    if expected is None and len(by_host) > 1:
        # A host's own answer replaces the placeholder no_reply of an _any job.
        by_host.pop(ANY_PLACEHOLDER_HOSTNAME, None)
    results = sorted(by_host.values(), key=lambda result: result.hostname)
    if expected is None:
        missing = [] if results else [ANY_PLACEHOLDER_HOSTNAME]
    else:
        missing = sorted(set(expected) - by_host.keys())
    complete = not missing
    if not complete and now < job.deadline:
        state = JobState.RUNNING
    else:
        error = "no result recorded by the deadline"
        results = sorted(
            [*results, *missing_results(job.job_id, missing, results, error)],
            key=lambda result: result.hostname,
        )
        state = overall_state(results)
    return _view(record, state, complete=complete, results=results)


def _view(
    record: JobRecord, state: JobState, *, complete: bool, results: list[ExecResult]
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
