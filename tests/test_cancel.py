"""Cancelling a running job: every agent still running it kills its process group."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from nats.aio.client import Client

from agentd.config import DEFAULT_BASE_ENV
from tests.conftest import (
    Controller,
    MakeAgent,
    MakeController,
    recorded_result,
    wait_gone,
)


def read_lines(fifo: Path, count: int) -> list[str]:
    """``count`` lines written to a FIFO by several writers, one after another."""
    lines: list[str] = []
    while len(lines) < count:
        lines += fifo.read_text().splitlines()
    return lines


async def test_cancel_kills_the_job_and_its_children_on_two_agents(
    controller: Controller, make_agent: MakeAgent, nc: Client, tmp_path: Path
) -> None:
    await make_agent("c1", labels={"pool": "cancel"})
    await make_agent("c2", labels={"pool": "cancel"})
    await controller.wait_for_agents("c1", "c2")
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    script = f"sleep 300 & echo child=$!; echo go > {fifo}; wait"
    started = await controller.request(
        "POST", "/node/pool:cancel/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script], "timeout": 300},
    )  # fmt: skip
    job_id = started.body["job_id"]
    await asyncio.to_thread(read_lines, fifo, 2)  # both are running

    cancelled = await controller.request("POST", f"/job/{job_id}/cancel")
    assert cancelled.status == 202
    assert cancelled.body["state"] == "running"
    for host in ("c1", "c2"):
        result = await recorded_result(nc, job_id, host)
        assert result["status"] == "cancelled"
        assert result["error"] == "cancelled on request of admin; process group killed"
        child = int(result["stdout"].partition("child=")[2].split()[0])
        assert wait_gone(child), f"{host}: the job's child outlived the cancel"
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.body["state"] == "cancelled"
    again = await controller.request("POST", f"/job/{job_id}/cancel")
    assert again.status == 409
    assert "has already ended (cancelled)" in again.body["details"]


async def test_cancel_keeps_results_of_hosts_that_finished(
    controller: Controller, make_agent: MakeAgent, nc: Client, tmp_path: Path
) -> None:
    for host in ("quick", "slow"):
        await make_agent(
            host,
            labels={"pool": "mixed"},
            allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )
    await controller.wait_for_agents("quick", "slow")
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    # Only "slow" has a file named after it: it waits; "quick" exits at once.
    (tmp_path / "slow").mkdir()
    script = f'echo go > {fifo}; while [ -d {tmp_path}/"$NEXEC_HOST" ]; do sleep 0.05; done'
    started = await controller.request(
        "POST", "/node/pool:mixed/command/shell?wait=false",
        json={"command": script, "timeout": 300},
    )  # fmt: skip
    job_id = started.body["job_id"]
    await asyncio.to_thread(read_lines, fifo, 2)
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
