"""A rollout outlives the controller that drives it: SIGKILL that controller (a real
process) mid-rollout, and a second controller on the same NATS takes the rollout over
once its lease passes, waits for the hosts already started (never starting them again)
and finishes it. Every host runs exactly once."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections import Counter
from pathlib import Path

import aiohttp

from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import ROLLOUTS
from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Fifo,
    LiveAgent,
    MakeController,
    NatsServer,
    told_then_gated,
)
from tests.test_rollout import HOSTS, POOL, logged, starts, wait_until_ended

LEASE_S = 1.0


def start_driver(nats_server: NatsServer, keys_file: Path) -> tuple[ManagedProcess, int]:
    """A controller process that sees the six agents; it and its HTTP port."""
    process = ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_server.url,
         "--listen", "127.0.0.1:0", "--keys-file", str(keys_file),
         "--rollout-lease-s", str(LEASE_S)],
        name="controller",
    )  # fmt: skip
    ready = process.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
    for host in HOSTS:
        process.wait_for_line(re.compile(f"agent joined: {host}"), STARTUP_TIMEOUT_S)
    return process, int(ready["port"])


async def test_a_killed_driver_s_rollout_is_finished_by_another_controller(
    nats_server: NatsServer,
    make_controller: MakeController,
    live_agent: LiveAgent,
    started: Fifo,
    tmp_path: Path,
) -> None:
    second = await make_controller(rollout_lease_s=LEASE_S)
    for host in HOSTS:
        await live_agent(
            second, host, labels={"pool": "roll"}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.mkdir()
    wait = told_then_gated(started, gate)
    body = {"command": logged(log, wait), "timeout": 60, "rollout": {"batch_size": 2}}
    driver, port = await asyncio.to_thread(start_driver, nats_server, keys_file)
    try:
        url = f"http://127.0.0.1:{port}/node/{POOL}/command/shell?wait=false"
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(url, json=body) as response,
        ):
            assert response.status == 202, await response.text()
            job_id = (await response.json())["job_id"]
        assert sorted(await started.lines(2)) == ["r1", "r2"]
        driver.popen.send_signal(signal.SIGKILL)
        await asyncio.to_thread(driver.popen.wait, STARTUP_TIMEOUT_S)
    finally:
        await asyncio.to_thread(driver.stop)

    await asyncio.wait_for(second.app[ROLLOUTS].took_over.wait(), STARTUP_TIMEOUT_S)
    gate.rmdir()  # r1 and r2 finish now, under the second controller's watch
    job = await wait_until_ended(second, job_id)

    assert Counter(starts(log)) == Counter(HOSTS)  # every host ran, and only once
    assert starts(log)[:2] in (["r1", "r2"], ["r2", "r1"])
    assert [r["status"] for r in job["results"]] == ["completed"] * 6, job
    assert (job["state"], job["complete"]) == ("completed", True)
    progress = job["rollout"]
    assert (progress["finished"], progress["running"], progress["pending"]) == (6, 0, 0)
