"""The record never contradicts the answer silently: a result recorded after the caller
was told ``no_reply`` is kept next to the controller's verdict, marked late (issue 11,
finding 4)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.jobs.views import job_view
from schemas.api import JobState
from schemas.messages import ExecJob, ExecResult, JobRecord, ResultStatus
from tests.helpers import (
    RECONNECT_WAIT_S,
    RESULTS_HEARTBEAT_S,
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    MakeController,
    RestartableNats,
)

NOT_ACKED = "not acknowledged within 2s"


def a_job(target: str = "_all") -> ExecJob:
    return ExecJob(job_id="j", command="true", deadline=10.0, target=target)


def completed(hostname: str) -> ExecResult:
    return ExecResult(
        job_id="j", hostname=hostname, status=ResultStatus.COMPLETED, exit_code=0, stdout="ok\n"
    )


def test_a_result_recorded_after_the_verdict_is_shown_late_with_the_verdict() -> None:
    record = JobRecord(job=a_job(), expected_hosts=["h1", "h2"], no_replies={"h2": NOT_ACKED})
    view = job_view(record, [completed("h1"), completed("h2")], now=1.0)
    assert view.results == [completed("h1"), completed("h2")]
    assert view.late == {"h2": NOT_ACKED}
    assert (view.state, view.complete) == (JobState.COMPLETED, True)


def test_a_verdict_decides_its_host_before_the_deadline_with_its_own_error() -> None:
    """The host-subject ``no_reply`` may be missing (its write failed): the job record's
    verdict still decides the host, with the error the caller was given."""
    record = JobRecord(job=a_job(), expected_hosts=["h1", "h2"], no_replies={"h2": NOT_ACKED})
    view = job_view(record, [completed("h1")], now=1.0)
    assert (view.state, view.complete, view.late) == (JobState.PARTIAL, True, {})
    assert [(r.hostname, r.status, r.error) for r in view.results] == [
        ("h1", ResultStatus.COMPLETED, None),
        ("h2", ResultStatus.NO_REPLY, NOT_ACKED),
    ]


def test_an_any_jobs_late_answer_is_marked_with_the_placeholders_verdict() -> None:
    record = JobRecord(job=a_job("_any"), expected_hosts=None, no_replies={"_any": NOT_ACKED})
    assert [(r.hostname, r.error) for r in job_view(record, [], now=1.0).results] == [
        ("_any", NOT_ACKED)
    ]
    view = job_view(record, [completed("h7")], now=1.0)
    assert (view.results, view.late) == ([completed("h7")], {"h7": NOT_ACKED})


async def recorded_late(controller: Controller, job_id: str, hostname: str) -> dict[str, Any]:
    """``GET /job/{id}`` once it shows the host's own result marked late (NATS is back,
    and both the agent's result and the controller's verdict were written again); the
    last view seen when that does not come within the bound."""
    view: dict[str, Any] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STARTUP_TIMEOUT_S * 2):
            while hostname not in view.get("late", {}):
                await asyncio.sleep(0.2)  # a client polling; each try is a real request
                response = await controller.request("GET", f"/job/{job_id}")
                view = response.body if response.status == 200 else {}
    return view


async def test_nats_stopped_across_a_jobs_end_answer_and_record_agree(
    tmp_path: Path, make_controller: MakeController, started: Fifo
) -> None:
    server = RestartableNats(tmp_path / "jetstream")
    url = server.url
    agent = Agent(
        AgentConfig(
            nats_url=url,
            hostname="h1",
            heartbeat_interval_s=0.2,
            reconnect_wait_s=RECONNECT_WAIT_S,
        )
    )
    try:
        controller = await make_controller(
            nats_url=url,
            delivery_margin_s=0.5,
            jetstream_timeout_s=0.5,
            results_heartbeat_s=RESULTS_HEARTBEAT_S,
        )
        await agent.start()
        await controller.wait_for_agents("h1")
        gate = tmp_path / "gate"
        gate.mkdir()
        script = f"echo go > {started.path}; while [ -d {gate} ]; do sleep 0.05; done; echo done"
        answer = asyncio.ensure_future(
            controller.exec("h1", {"command": "sh", "args": ["-c", script], "timeout": 2})
        )
        await started.lines(1)
        await asyncio.to_thread(server.stop, signum=signal.SIGKILL)
        gate.rmdir()  # the command ends while NATS is down: its result cannot be recorded
        response = await answer
        [told] = response.body["results"]
        assert told["status"] == "no_reply"

        server.start_again()
        view = await recorded_late(controller, response.body["job_id"], "h1")
        [recorded] = view["results"]
        assert (recorded["status"], recorded["stdout"]) == ("completed", "done\n")
        assert view["late"] == {"h1": told["error"]}
    finally:
        await agent.stop()
        await asyncio.to_thread(server.stop)


def test_an_any_jobs_taker_given_up_is_shown_with_its_verdict_then_late() -> None:
    """An ``_any`` job's taker acknowledged and was then given up (no result by the
    deadline, or lost): the verdict names that host, not the placeholder."""
    took = "acknowledged, but no result recorded within 2.5s"
    record = JobRecord(job=a_job("_any"), expected_hosts=None, no_replies={"h7": took})
    before = job_view(record, [], now=1.0)
    assert [(r.hostname, r.status, r.error) for r in before.results] == [
        ("h7", ResultStatus.NO_REPLY, took)
    ]
    assert (before.state, before.complete) == (JobState.FAILED, True)
    view = job_view(record, [completed("h7")], now=1.0)
    assert (view.results, view.late) == ([completed("h7")], {"h7": took})
