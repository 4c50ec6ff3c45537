"""deploy/nats/cluster/: three nodes, JetStream with replicas 3, losing one node
(the cluster: :mod:`tests.cluster`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from agentd.agent import Agent
from agentd.config import AgentConfig
from runtime.jetstream import ensure_registry
from schemas.subjects import Subjects
from tests.cluster import Cluster, retry_until, wait_for_stream_leaders
from tests.helpers import MakeController


async def test_all_works_and_survives_losing_a_node(
    cluster: Cluster, make_controller: MakeController, agent_state_dir: Path
) -> None:
    node1, node2, node3 = cluster.urls
    # As if an earlier controller had made it: the registry bucket with one replica.
    # This controller brings it to three (wait_for_stream_leaders checks).
    nc = await nats.connect(node1, **cluster.auth.connect_options("controller"))

    async def registry_created() -> bool:
        """the registry bucket was created"""
        await ensure_registry(nc.jetstream(timeout=2), Subjects(), replicas=1)
        return True

    try:
        await retry_until(registry_created)
    finally:
        await nc.close()
    controller = await make_controller(
        nats_url=node1, jetstream_replicas=3, **cluster.auth.settings("controller")
    )
    agents = [
        Agent(AgentConfig(nats_url=node2, hostname="a2", heartbeat_interval_s=30,
                          state_dir=agent_state_dir / "a2",
                          **cluster.auth.settings("agent-a2"))),
        Agent(AgentConfig(nats_url=node3, hostname="a3", heartbeat_interval_s=30,
                          state_dir=agent_state_dir / "a3",
                          **cluster.auth.settings("agent-a3"))),
    ]  # fmt: skip
    for agent in agents:
        await agent.start()
    try:
        await controller.wait_for_agents("a2", "a3")
        before = await controller.exec("_all", {"command": "echo", "args": ["before"]})
        assert [(r["hostname"], r["status"]) for r in before.body["results"]] == [
            ("a2", "completed"),
            ("a3", "completed"),
        ], before.body

        await asyncio.to_thread(cluster.servers[1].stop)  # node 2, where a2 is connected
        await asyncio.wait_for(agents[0].reconnected.wait(), 30)
        assert agents[0].connected_url in (node1, node3)
        await wait_for_stream_leaders(cluster, node1)

        after = await controller.exec("_all", {"command": "echo", "args": ["after"]})
        assert [(r["hostname"], r["status"], r["stdout"]) for r in after.body["results"]] == [
            ("a2", "completed", "after\n"),
            ("a3", "completed", "after\n"),
        ], after.body
        for response in (before, after):  # both records whole on the surviving nodes
            record = await controller.request("GET", f"/job/{response.body['job_id']}")
            assert record.status == 200
            assert record.body["state"] == "completed"
            assert record.body["results"] == response.body["results"]
    finally:
        for agent in agents:
            await agent.stop()
