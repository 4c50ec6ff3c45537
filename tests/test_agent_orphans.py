"""An agent killed mid-job leaves its jobs' process groups running; started again
(same ``state_dir``) it kills them, only when they are still the same processes,
and records those jobs ``failed``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
from nats.aio.client import Client

from agentd.orphans import ALREADY_ENDED, KILLED, boot_id, process_start_time
from tests.conftest import (
    Controller,
    Fifo,
    MakeAgent,
    SpawnAgent,
    recorded_result,
    wait_gone,
)


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_a_restarted_agent_kills_the_job_a_killed_agent_left_running(
    controller: Controller, spawn_agent: SpawnAgent, nc: Client, started: Fifo
) -> None:
    agent = spawn_agent("orphan-1")
    await controller.wait_for_agents("orphan-1")
    script = f"sleep 300 & echo $$ $! > {started.path}; wait"
    submitted = await controller.request(
        "POST", "/node/orphan-1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script], "timeout": 300},
    )  # fmt: skip
    job_id = submitted.body["job_id"]
    [line] = await started.lines(1)
    shell, child = (int(pid) for pid in line.split())
    group = psutil.Process(shell)  # is_running() below knows a reused pid

    try:
        agent.stop(signum=signal.SIGKILL)
        assert running(shell) and running(child), "the job died with its agent"

        spawn_agent("orphan-1")  # the same state_dir
        assert wait_gone(shell), "the restarted agent left the job's process running"
        assert wait_gone(child), "the restarted agent left the job's child running"
    finally:
        if group.is_running():
            os.killpg(shell, signal.SIGKILL)
    result = await recorded_result(nc, job_id, "orphan-1")
    assert result["status"] == "failed"
    assert result["error"] == KILLED
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.body["state"] == "failed"
    assert [item["error"] for item in job.body["results"]] == [KILLED]


def test_an_unusable_state_dir_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    completed = subprocess.run(
        [sys.executable, "-m", "agentd", "--state-dir", str(not_a_directory)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert f"state_dir {str(not_a_directory)!r} unusable" in completed.stderr


async def test_a_leftover_whose_process_is_not_the_same_kills_nothing(
    controller: Controller, make_agent: MakeAgent, nc: Client, agent_state_dir: Path
) -> None:
    """A pid reused by another process (its start time differs), a file of an earlier
    boot and a corrupt file: nothing is killed, each job is recorded failed, every
    file is removed. The running job of another agent sharing the directory is
    left alone. (The controller makes the results stream.)"""
    state_dir = agent_state_dir / "leftovers"
    state_dir.mkdir(parents=True)
    bystander = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True)
    try:
        start_time = process_start_time(bystander.pid)
        assert start_time is not None
        leftovers = {
            "reused-pid": {"start_time": start_time + 1, "boot_id": boot_id()},
            "earlier-boot": {"start_time": start_time, "boot_id": "not-this-boot"},
        }
        for job_id, identity in leftovers.items():
            entry = {"job_id": job_id, "hostname": "leftovers", "pgid": bystander.pid}
            (state_dir / f"{job_id}.job").write_text(json.dumps({**entry, **identity}))
        (state_dir / "corrupt.job").write_text("{not json")
        other_agent = state_dir / "other-agent.job"
        running_elsewhere = {"job_id": "j", "hostname": "other", "pgid": bystander.pid}
        other_agent.write_text(
            json.dumps({**running_elsewhere, "start_time": start_time, "boot_id": boot_id()})
        )

        await make_agent("leftovers", state_dir=state_dir)

        for job_id in leftovers:
            result = await recorded_result(nc, job_id, "leftovers")
            assert (result["status"], result["error"]) == ("failed", ALREADY_ENDED)
        assert running(bystander.pid), "an agent killed a process it did not start"
        assert list(state_dir.iterdir()) == [other_agent]  # not this agent's job
    finally:
        bystander.kill()
        await bystander.wait()
