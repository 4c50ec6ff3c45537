"""The hosts one turn of a rollout's window starts are published together in hostname
order, so a host that never acknowledges does not hold the rest of its turn back
(docs/jobs.md, "Rollouts"). Real NATS, a real controller, real agents (one a
process, frozen with SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import signal

from agentd.config import DEFAULT_BASE_ENV
from tests.helpers import STARTUP_TIMEOUT_S, Fifo, LiveAgent, LiveAgentProcess, MakeController

OTHERS = ["r2", "r3", "r4"]


async def test_a_frozen_host_does_not_hold_back_the_rest_of_its_turn(
    make_controller: MakeController,
    live_agent: LiveAgent,
    live_agent_process: LiveAgentProcess,
    started: Fifo,
) -> None:
    """r1 (first in hostname order) is frozen: r2 and r3, in its turn, start long
    before r1's delivery timeout (60 s, more than the test waits for them), and r4
    when one of them finished."""
    controller = await make_controller()
    frozen = await live_agent_process(
        controller, "r1", "--labels", "pool:roll", "--allow-shell",
        "--base-env", "NEXEC_HOST=r1", "--base-env", f"PATH={DEFAULT_BASE_ENV['PATH']}",
    )  # fmt: skip
    for host in OTHERS:
        await live_agent(
            controller, host, labels={"pool": "roll"}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip
    body = {
        "command": f'echo "$NEXEC_HOST" > {started.path}', "timeout": 60,
        "delivery_timeout": 60, "rollout": {"batch_size": 3},
    }  # fmt: skip
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        answer = asyncio.create_task(
            controller.request("POST", "/node/pool:roll/command/shell", json=body)
        )
        assert sorted(await started.lines(len(OTHERS))) == OTHERS
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    response = await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)
    assert response.status == 202, response.body
    by_host = {r["hostname"]: r["status"] for r in response.body["results"]}
    assert [by_host[host] for host in OTHERS] == ["completed"] * len(OTHERS)
