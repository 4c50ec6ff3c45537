"""The one outcome rule (controller/jobs/outcome.py) that collection, job views and live
output share: missing hosts, completeness and the ``_any`` placeholder."""

from __future__ import annotations

from controller.jobs.outcome import ANY_PLACEHOLDER_HOSTNAME, Outcome
from schemas.messages import ExecResult, ResultStatus


def result(hostname: str, status: ResultStatus = ResultStatus.COMPLETED) -> ExecResult:
    return ExecResult(job_id="j", hostname=hostname, status=status)


def test_named_hosts_are_missing_until_each_is_decided() -> None:
    outcome = Outcome(["h1", "h2"])
    assert set(outcome.missing()) == {"h1", "h2"}
    outcome.decide("h1")
    outcome.decide("stranger")  # a host the job was not sent to decides nothing
    assert (set(outcome.missing()), outcome.complete) == ({"h2"}, False)
    outcome.decide("h2")
    assert (set(outcome.missing()), outcome.complete) == (set(), True)
    assert not outcome.accepts("stranger")


def test_an_any_job_waits_for_the_placeholder_then_for_the_host_that_took_it() -> None:
    outcome = Outcome(None)
    assert set(outcome.missing()) == {ANY_PLACEHOLDER_HOSTNAME}
    assert set(outcome.missing(taken_by={"h7"})) == {"h7"}
    outcome.decide("h7")
    assert (set(outcome.missing(taken_by={"h7"})), outcome.complete) == (set(), True)
    assert outcome.accepts("anyone")


def test_an_any_jobs_placeholder_gives_way_to_a_hosts_answer() -> None:
    outcome = Outcome(None)
    placeholder = result(ANY_PLACEHOLDER_HOSTNAME, ResultStatus.NO_REPLY)
    assert outcome.shown([placeholder]) == {ANY_PLACEHOLDER_HOSTNAME: placeholder}
    assert outcome.shown([placeholder, result("h7")]) == {"h7": result("h7")}


def test_results_of_hosts_the_job_was_not_sent_to_are_not_shown() -> None:
    assert list(Outcome(["h1"]).shown([result("h1"), result("h2")])) == ["h1"]


def test_an_any_job_is_answered_by_the_host_that_took_it_only() -> None:
    outcome = Outcome(None)
    assert not outcome.take(ANY_PLACEHOLDER_HOSTNAME) or outcome.taken_by is None
    assert outcome.take("h7")
    assert not outcome.take("h8")  # a second host cannot take it, nor answer it
    assert (outcome.taken_by, outcome.accepts("h8"), outcome.accepts("h7")) == ("h7", False, True)
    assert outcome.accepts(ANY_PLACEHOLDER_HOSTNAME)


def test_an_any_jobs_view_shows_the_host_that_took_it_or_the_first_recorded() -> None:
    recorded = [result("rival"), result("h7")]
    assert list(Outcome(None, taken_by="h7").shown(recorded)) == ["h7"]
    assert list(Outcome(None).shown([result("h7"), result("late-rival")])) == ["h7"]
