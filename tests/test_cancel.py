"""Cancelling a running job: every agent still running it kills its process group."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from agentd.config import DEFAULT_BASE_ENV
from tests.helpers import (
    Controller,
    Fifo,
    LiveAgent,
    MakeController,
    gone,
    recorded_result,
)


async def test_cancel_kills_the_job_and_its_children_on_two_agents(
    controller: Controller, live_agent: LiveAgent, nc: Client, started: Fifo
) -> None:
    await live_agent(controller, "c1", labels={"pool": "cancel"})
    await live_agent(controller, "c2", labels={"pool": "cancel"})
    script = f"sleep 300 & echo child=$!; echo go > {started.path}; wait"
    submitted = await controller.request(
        "POST", "/node/pool:cancel/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script], "timeout": 300},
    )  # fmt: skip
    job_id = submitted.body["job_id"]
    await started.lines(2)  # both are running

    cancelled = await controller.request("POST", f"/job/{job_id}/cancel")
    assert cancelled.status == 202
    assert cancelled.body["state"] == "running"
    for host in ("c1", "c2"):
        result = await recorded_result(nc, job_id, host)
        assert result["status"] == "cancelled"
        assert result["error"] == "cancelled on request of admin; process group killed"
        child = int(result["stdout"].partition("child=")[2].split()[0])
        assert await gone(child), f"{host}: the job's child outlived the cancel"
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.body["state"] == "cancelled"
    again = await controller.request("POST", f"/job/{job_id}/cancel")
    assert again.status == 409
    assert "has already ended (cancelled)" in again.body["details"]


async def test_cancel_keeps_results_of_hosts_that_finished(
    controller: Controller, live_agent: LiveAgent, nc: Client, started: Fifo, tmp_path: Path
) -> None:
    for host in ("quick", "slow"):
        await live_agent(
            controller,
            host,
            labels={"pool": "mixed"},
            allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )
    # Only "slow" has a file named after it: it waits; "quick" exits at once.
    (tmp_path / "slow").mkdir()
    script = f'echo go > {started.path}; while [ -d {tmp_path}/"$NEXEC_HOST" ]; do sleep 0.05; done'
    submitted = await controller.request(
        "POST", "/node/pool:mixed/command/shell?wait=false",
        json={"command": script, "timeout": 300},
    )  # fmt: skip
    job_id = submitted.body["job_id"]
    await started.lines(2)
    finished = await recorded_result(nc, job_id, "quick")
    assert finished["status"] == "completed"
    assert (await controller.request("POST", f"/job/{job_id}/cancel")).status == 202
    assert (await recorded_result(nc, job_id, "slow"))["status"] == "cancelled"
    job = await controller.request("GET", f"/job/{job_id}")
    assert [r["status"] for r in job.body["results"]] == ["completed", "cancelled"]
    assert job.body["state"] == "cancelled"  # every host that did not complete was cancelled


async def test_cancel_of_an_unknown_job_is_404(controller: Controller) -> None:
    response = await controller.request("POST", "/job/nope/cancel")
    assert response.status == 404


async def test_cancel_needs_job_cancel(make_controller: MakeController) -> None:
    controller = await make_controller(keys={"reader": (["job:read"], [])})
    response = await controller.request(
        "POST", "/job/x/cancel", key=controller.extra_keys["reader"]
    )
    assert response.status == 403
