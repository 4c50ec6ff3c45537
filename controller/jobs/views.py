"""What ``GET /job`` and ``GET /job/{id}`` show of a job, derived from its record and
its recorded results by the outcome rule (:mod:`controller.jobs.outcome`)."""

from __future__ import annotations

from controller.jobs.outcome import (
    ANY_PLACEHOLDER_HOSTNAME,
    Outcome,
    missing_results,
    overall_state,
)
from controller.jobs.rollout_plan import failures_stop, host_failed
from schemas.api import JobState, JobSummary, JobView, RolloutProgress
from schemas.messages import ExecResult, JobRecord, ResultStatus, RolloutState

DEADLINE_PASSED = "no result recorded by the deadline"


def job_view(
    record: JobRecord,
    recorded: list[ExecResult],
    now: float,
    rollout: RolloutState | None = None,
) -> JobView:
    """The job as ``GET /job/{id}`` shows it at time ``now``.

    Each host shows its recorded result or, failing one, the controller's ``no_reply``
    verdict (``record.no_replies``); a host whose result was recorded after such a
    verdict is listed in ``late`` with it. Before the deadline a job missing results is
    ``running``; after it, each host still missing is a ``no_reply`` result (one
    ``_any`` placeholder for an ``_any`` job that nobody took). Results of hosts the
    job was not sent to are left out, as the collector drops them; so are those of an
    ``_any`` job's hosts that did not take it (:meth:`Outcome.shown`). A job never
    published is ``not_published``, complete, with no results (no agent got it).
    A rollout's progress comes from its results and ``rollout``, its entry.
    """
    if not record.published:
        return _view(record, JobState.NOT_PUBLISHED, complete=True, results=[])
    job = record.job
    outcome = Outcome(record.expected_hosts, taken_by=record.taken_by)
    results, late = _known_results(record, outcome, recorded)
    for result in results:
        outcome.decide(result.hostname)
    complete = outcome.complete
    if not complete and now < job.deadline:
        state = JobState.RUNNING
    else:
        results += missing_results(job.job_id, outcome.missing(), results, DEADLINE_PASSED)
        state = overall_state(results)
    results.sort(key=lambda result: result.hostname)
    progress = None if record.rollout is None else rollout_progress(record, results, rollout)
    return _view(record, state, complete=complete, results=results, late=late, rollout=progress)


def _known_results(
    record: JobRecord, outcome: Outcome, recorded: list[ExecResult]
) -> tuple[list[ExecResult], dict[str, str]]:
    """Each host's recorded result or, failing one, the controller's ``no_reply``
    verdict on it; and ``late``, the verdicts a result recorded after them overrides."""
    by_host = outcome.shown(recorded)
    # A verdict names a host the job was sent to; for _any, the placeholder (nobody
    # took it) or the host that took it and was given up.
    no_replies = {h: e for h, e in record.no_replies.items() if outcome.accepts(h)}
    any_verdict = no_replies.get(ANY_PLACEHOLDER_HOSTNAME) if outcome.expected is None else None
    late = {
        host: verdict
        for host, result in by_host.items()
        if result.status is not ResultStatus.NO_REPLY
        and (verdict := no_replies.get(host, any_verdict)) is not None
    }
    # A verdict stands for a host that recorded nothing (for _any: while nobody did).
    decided = [] if outcome.expected is None and by_host else no_replies.keys() - by_host.keys()
    verdicts = missing_results(record.job.job_id, decided, [], no_replies)
    return [*by_host.values(), *verdicts], late


def rollout_progress(
    record: JobRecord, results: list[ExecResult], state: RolloutState | None
) -> RolloutProgress:
    """How far a rollout got: its hosts' results, and its entry (the hosts started;
    without the entry, a host with no result counts as pending)."""
    assert record.rollout is not None
    plan = record.rollout
    decided = {result.hostname: result for result in results}
    skipped = [r for r in decided.values() if r.status is ResultStatus.SKIPPED]
    finished = [r for r in decided.values() if r.status is not ResultStatus.SKIPPED]
    started = set() if state is None else set(state.started)
    running = started - decided.keys()
    failed = sum(host_failed(result) for result in finished)
    stopped = state.stopped if state is not None else None
    if stopped is None and skipped:
        stopped = skipped[0].error
    pending = len(record.expected_hosts or ()) - len(decided) - len(running)
    if stopped is None and pending:  # hosts still running, none started any more
        stopped = failures_stop(failed, plan.max_failures)
    return RolloutProgress(
        batch_size=plan.batch_size,
        max_failures=plan.max_failures,
        pause_s=plan.pause_s,
        pending=pending,
        running=len(running),
        finished=len(finished),
        failed=failed,
        skipped=len(skipped),
        stopped=stopped,
        max_hosts=plan.max_hosts,
    )


def _view(
    record: JobRecord,
    state: JobState,
    *,
    complete: bool,
    results: list[ExecResult],
    late: dict[str, str] | None = None,
    rollout: RolloutProgress | None = None,
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
        rollout=rollout,
        shell=job.shell,
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
        shell=job.shell,
    )
