"""The registry: GET /node, entries that expire, and agents that leave."""

from __future__ import annotations

import asyncio
import signal

from tests.helpers import (
    Controller,
    LiveAgent,
    LiveAgentProcess,
    MakeAgent,
    MakeController,
)


async def test_get_node_lists_live_agents_with_labels(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "web1.example.com", labels={"role": "web"})
    await live_agent(controller, "db1.example.com", labels={"role": "db"})
    listed = await controller.request("GET", "/node")
    assert listed.status == 200
    nodes = listed.body["nodes"]
    assert [n["hostname"] for n in nodes] == ["db1.example.com", "web1.example.com"]
    web = nodes[1]
    assert web["labels"] == {"role": "web"}
    assert web["last_seen"] >= web["started_at"] > 0
    assert web["version"]
    assert len(web["load_avg"]) == 3

    one = await controller.request("GET", "/node/web1.example.com")
    assert [n["hostname"] for n in one.body["nodes"]] == ["web1.example.com"]
    by_label = await controller.request("GET", "/node/role:db")
    assert [n["hostname"] for n in by_label.body["nodes"]] == ["db1.example.com"]
    everyone = await controller.request("GET", "/node/_all")
    assert len(everyone.body["nodes"]) == 2
    missing = await controller.request("GET", "/node/nope.example.com")
    assert missing.status == 404
    bad = await controller.request("GET", "/node/role:")
    assert bad.status == 400


async def test_get_node_needs_node_read(make_controller: MakeController) -> None:
    controller = await make_controller(keys={"exec-only": (["command:exec"], [])})
    response = await controller.request("GET", "/node", key=controller.extra_keys["exec-only"])
    assert response.status == 403
    assert "node:read" in response.body["details"]


async def test_a_controller_started_later_sees_the_agents_already_there(
    make_controller: MakeController, make_agent: MakeAgent
) -> None:
    await make_agent("early-1")
    late = await make_controller()
    await late.wait_for_agents("early-1")
    response = await late.exec("early-1", {"command": "true"})
    assert response.status == 202


async def test_an_agent_that_stops_heartbeating_expires(
    make_controller: MakeController, live_agent_process: LiveAgentProcess
) -> None:
    # Agents expire only up to the registry watch's last good check.
    controller = await make_controller(registry_check_interval_s=0.2)
    frozen = await live_agent_process(controller, "frozen-1", "--heartbeat-interval", "0.3")
    # No clean goodbye: only the entry's TTL removes it.
    await asyncio.to_thread(frozen.stop, signum=signal.SIGKILL)
    await controller.registry.wait_until(
        lambda registry: not [hb for hb in registry.live() if hb.hostname == "frozen-1"], 20
    )
    response = await controller.exec("frozen-1", {"command": "true"})
    assert response.status == 404
