"""A NATS restart costs seconds, not the fleet: nothing restarted, no live agent reported
missing, exec works again within seconds (issue 11, finding 1)."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.appkeys import STATE_KEEPER
from schemas.subjects import AGENT_SERVICE, CONTROLLER_SERVICE, Subjects
from tests.helpers import (
    RECONNECT_WAIT_S,
    RESULTS_HEARTBEAT_S,
    LiveAgent,
    MakeController,
    RestartableNats,
    service_replies,
)

SRV = Subjects.service_request

RECOVERY_BOUND_S = 10.0


async def exec_all_until_everyone_answers(controller: object, hosts: list[str]) -> float:
    """Seconds until ``_all`` answered 202 with every host completed (bounded)."""
    started = time.monotonic()
    deadline = started + RECOVERY_BOUND_S
    while True:
        response = await controller.exec("_all", {"command": "true", "timeout": 2})  # type: ignore[attr-defined]
        results = response.body.get("results", []) if response.status == 202 else []
        if sorted((r["hostname"], r["status"]) for r in results) == [
            (host, "completed") for host in hosts
        ]:
            return time.monotonic() - started
        assert time.monotonic() < deadline, (response.status, response.body)
        await asyncio.sleep(0.2)  # a client retrying; each try is a real request


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
async def test_a_nats_restart_costs_seconds_not_the_fleet(
    tmp_path: Path,
    make_controller: MakeController,
    caplog: pytest.LogCaptureFixture,
    signum: signal.Signals,
) -> None:
    server = RestartableNats(tmp_path / "jetstream")
    url = server.url
    agents: list[Agent] = []
    try:
        controller = await make_controller(nats_url=url, results_heartbeat_s=RESULTS_HEARTBEAT_S)
        for hostname in ("h1", "h2"):
            config = AgentConfig(
                nats_url=url,
                hostname=hostname,
                heartbeat_interval_s=0.2,
                kill_grace_s=0.5,
                reconnect_wait_s=RECONNECT_WAIT_S,
                state_dir=tmp_path / "agent-state" / hostname,
            )
            agents.append(Agent(config))
            await agents[-1].start()
        await controller.wait_for_agents("h1", "h2")
        await exec_all_until_everyone_answers(controller, ["h1", "h2"])

        await asyncio.to_thread(server.stop, signum=signum)
        server.start_again()
        await exec_all_until_everyone_answers(controller, ["h1", "h2"])

        node = await controller.request("GET", "/node")
        assert sorted(n["hostname"] for n in node.body["nodes"]) == ["h1", "h2"]
        # Discovery answers again too: the $SRV subscriptions came back with the connection.
        asker = await nats.connect(url)
        try:
            pings = await service_replies(asker, SRV("PING"), expected=3)
            assert sorted(p["name"] for p in pings) == [
                AGENT_SERVICE,
                AGENT_SERVICE,
                CONTROLLER_SERVICE,
            ]
        finally:
            await asker.close()
        missing = [
            r.getMessage()
            for r in caplog.records
            if r.name == "nexec.controller.registry"
            and ("expired" in r.message or "left" in r.message)
        ]
        assert missing == []  # no live agent was ever reported missing
    finally:
        for agent in agents:
            await agent.stop()
        await asyncio.to_thread(server.stop)


@pytest.mark.parametrize(
    "stream",
    [
        "nexec_jobs",
        "nexec_results",
        "nexec_audit",
        "KV_nexec_idempotency",
        "KV_nexec_agents",
        "KV_nexec_fleet",
        "KV_nexec_rollouts",
        "KV_nexec_host_slots",
    ],
)
async def test_a_stream_or_bucket_lost_under_a_running_system_is_made_again(
    make_controller: MakeController, live_agent: LiveAgent, nc: Client, stream: str
) -> None:
    controller = await make_controller(state_check_interval_s=0.2)
    await live_agent(controller, "h1", heartbeat_interval_s=0.2)
    js = nc.jetstream()
    await js.delete_stream(stream)

    async with asyncio.timeout(RECOVERY_BOUND_S):
        while True:
            if await exists(js, stream):
                break
            await asyncio.sleep(0.1)  # the keeper checks every 0.2 s
    await exec_all_until_everyone_answers(controller, ["h1"])
    job = await controller.exec("h1", {"command": "echo", "args": ["back"]})
    recorded = await controller.request("GET", f"/job/{job.body['job_id']}")
    assert [r["stdout"] for r in recorded.body["results"]] == ["back\n"]
    nodes = await controller.request("GET", "/node")
    assert [n["hostname"] for n in nodes.body["nodes"]] == ["h1"]
    assert controller.app[STATE_KEEPER].remade >= 1


async def exists(js: JetStreamContext, stream: str) -> bool:
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        return False
    return True
