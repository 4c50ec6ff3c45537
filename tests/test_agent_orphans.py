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
from typing import Any

import psutil
from nats.aio.client import Client

from agentd.config import DEFAULT_BASE_ENV
from agentd.run.orphans import ALREADY_ENDED, KILLED, SUFFIX, boot_id, process_start_time
from controller.jobs.agent_watch import AGENT_LOST
from schemas.subjects import Subjects
from tests.helpers import (
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeAgent,
    MakeController,
    SpawnAgent,
    gone,
    recorded_result,
)
from tests.test_agent_lost import until


async def agents_own_result(nc: Client, job_id: str, hostname: str) -> dict[str, Any]:
    """The first result record of the host that is not a controller's ``no_reply``."""
    subscription = await nc.jetstream().subscribe(
        Subjects().result_record(job_id, hostname), ordered_consumer=True
    )
    try:
        while True:
            result: dict[str, Any] = json.loads((await subscription.next_msg(timeout=20)).data)
            if result["status"] != "no_reply":
                return result
    finally:
        await subscription.unsubscribe()


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_a_killed_agent_is_lost_in_seconds_and_its_orphan_killed_when_it_restarts(
    *,
    make_controller: MakeController,
    spawn_agent: SpawnAgent,
    live_agent: LiveAgent,
    live_agent_process: LiveAgentProcess,
    nc: Client,
    started: Fifo,
    agent_state_dir: Path,
) -> None:
    """Killed mid-job (SIGKILL), the host is answered ``no_reply``, "agent lost while
    running", long before the job's deadline, and the other host's result stands;
    started again, the agent kills the job it left and records it ``failed``."""
    controller = await make_controller(agent_lost_after_s=1.0)
    victim_config = started.path.parent / "victim.toml"
    victim_config.write_text(f'[base_env]\nPATH = "{DEFAULT_BASE_ENV["PATH"]}"\nROLE = "victim"\n')
    agent = await live_agent_process(
        controller, "orphan-1", "--config", str(victim_config), "--running-report-interval", "0.2"
    )
    await live_agent(
        controller, "survivor", heartbeat_interval_s=0.2, running_report_interval_s=0.2
    )
    script = f'[ "$ROLE" = victim ] || exit 0; sleep 300 & echo $$ $! > {started.path}; wait'
    body = {"command": "sh", "args": ["-c", script], "timeout": 300}
    answer = asyncio.create_task(controller.exec("_all", body))
    [line] = await started.lines(1)
    shell, child = (int(pid) for pid in line.split())
    group = psutil.Process(shell)  # is_running() below knows a reused pid

    try:
        # The agent notes the process just after it started: after that, kill it.
        await until(lambda: any((agent_state_dir / "orphan-1").glob(f"*{SUFFIX}")))
        await asyncio.to_thread(agent.stop, signum=signal.SIGKILL)
        assert running(shell) and running(child), "the job died with its agent"
        response = await answer
        results = {item["hostname"]: item for item in response.body["results"]}
        assert (results["survivor"]["status"], results["survivor"]["exit_code"]) == (
            "completed",
            0,
        )
        lost = results["orphan-1"]
        assert lost["status"] == "no_reply"
        assert lost["error"].startswith(AGENT_LOST), lost  # not the deadline's words

        await asyncio.to_thread(spawn_agent, "orphan-1")  # the same state_dir
        assert await gone(shell), "the restarted agent left the job's process running"
        assert await gone(child), "the restarted agent left the job's child running"
    finally:
        if group.is_running():
            os.killpg(shell, signal.SIGKILL)
    job_id = response.body["job_id"]
    result = await agents_own_result(nc, job_id, "orphan-1")
    assert (result["status"], result["error"]) == ("failed", KILLED)
    job = await controller.request("GET", f"/job/{job_id}")
    orphan = [item for item in job.body["results"] if item["hostname"] == "orphan-1"]
    assert ("failed", KILLED) in [(item["status"], item["error"]) for item in orphan]


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
