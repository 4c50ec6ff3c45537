"""``no_reply`` means it will not run: an agent frozen past the delivery timeout refuses
the job when it wakes (its ``deliver_by`` passed), and an ``_any`` job's placeholder
gives way to the host's own answer (issue 11, finding 5)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from controller.jobs.views import job_view
from schemas.messages import ExecJob, ExecResult, JobRecord, ResultStatus
from schemas.subjects import Subjects
from tests.helpers import STARTUP_TIMEOUT_S, LiveAgentProcess, MakeController


async def results_on(nc: Client, job_id: str, hostname: str, count: int) -> list[dict[str, Any]]:
    """The first ``count`` records on the host's result subject of the job."""
    subscription = await nc.jetstream().subscribe(
        Subjects().result_record(job_id, hostname), ordered_consumer=True
    )
    try:
        return [
            json.loads((await subscription.next_msg(timeout=STARTUP_TIMEOUT_S)).data)
            for _ in range(count)
        ]
    finally:
        await subscription.unsubscribe()


async def test_an_agent_frozen_past_the_delivery_timeout_never_runs_the_job(
    make_controller: MakeController,
    live_agent_process: LiveAgentProcess,
    nc: Client,
    tmp_path: Path,
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("max_clock_skew_s = 0.0\n")  # one machine: one clock
    controller = await make_controller()
    agent = await live_agent_process(controller, "frozen", "--config", str(config))
    marker = tmp_path / "ran"
    os.kill(agent.pid, signal.SIGSTOP)
    try:
        response = await controller.exec(
            "frozen",
            {"command": "touch", "args": [str(marker)], "delivery_timeout": 0.5, "timeout": 2},
        )
    finally:
        os.kill(agent.pid, signal.SIGCONT)
    [answer] = response.body["results"]
    assert (answer["status"], answer["error"]) == ("no_reply", "not acknowledged within 0.5s")

    # Woken, the agent takes the job off its socket, and refuses it: it is recorded so.
    records = await results_on(nc, response.body["job_id"], "frozen", 2)
    refusal = next(r for r in records if r["status"] == "failed")
    assert "after its deliver_by" in refusal["error"]
    assert not marker.exists()
    # The record keeps both: the refusal, and the no_reply the caller was given.
    view = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert [r["status"] for r in view.body["results"]] == ["failed"]
    assert view.body["late"] == {"frozen": "not acknowledged within 0.5s"}


def test_an_any_jobs_placeholder_gives_way_to_the_hosts_answer() -> None:
    job = ExecJob(job_id="j", command="true", deadline=1.0, target="_any")
    record = JobRecord(job=job, expected_hosts=None)
    placeholder = ExecResult(job_id="j", hostname="_any", status=ResultStatus.NO_REPLY)
    late = ExecResult(job_id="j", hostname="h1", status=ResultStatus.COMPLETED, exit_code=0)
    view = job_view(record, [placeholder, late], now=2.0)
    assert [(r.hostname, r.status) for r in view.results] == [("h1", ResultStatus.COMPLETED)]
