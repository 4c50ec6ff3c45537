"""deploy/nats/cluster/: three nodes, JetStream with replicas 3, losing one node.

The servers run the repository's configs with the users, TLS and signing keys
of ``nexec nats-auth``; the test only points their JetStream directories at
temporary ones and their route ports at free ones (client ports are chosen by
the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest

from agentd.agent import Agent
from agentd.config import AgentConfig
from nexec.dev.processes import ManagedProcess, start_nats_server
from runtime.jetstream import ensure_registry
from schemas import Subjects
from tests.conftest import MakeController
from tests.deployed_nats import GeneratedAuth, deploy_config

ROUTE_PORTS = ("6222", "6223", "6224")
STREAMS = ("nexec_jobs", "nexec_results", "nexec_audit", "KV_nexec_agents")


@dataclass
class Cluster:
    servers: list[ManagedProcess]
    urls: list[str]
    auth: GeneratedAuth


@pytest.fixture
def cluster(tmp_path: Path, unused_tcp_port_factory: Callable[[], int]) -> Iterator[Cluster]:
    auth = GeneratedAuth.write(tmp_path / "generated", ["a2", "a3"])
    route_ports = {
        f"127.0.0.1:{port}": f"127.0.0.1:{unused_tcp_port_factory()}" for port in ROUTE_PORTS
    }
    servers: list[ManagedProcess] = []
    urls: list[str] = []
    try:
        for node in (1, 2, 3):
            store_dir = {f"/var/lib/nexec/nats-n{node}": str(tmp_path / f"js{node}")}
            conf = deploy_config(f"cluster/node{node}.conf", tmp_path, store_dir | route_ports)
            server, url = start_nats_server(tmp_path / "unused", config_file=conf)
            servers.append(server)
            urls.append(url)
        yield Cluster(servers, urls, auth)
    finally:
        for server in servers:
            server.stop()


async def retry_until(attempt: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    """Call ``attempt`` until it returns True (NATS errors count as False): a cluster
    needs a few seconds to elect its JetStream leaders. Fails the test after ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            for delay_s in itertools.chain((0.1, 0.2, 0.3, 0.4), itertools.repeat(0.5)):
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    if await attempt():
                        return
                await asyncio.sleep(delay_s)  # a retry delay, not a synchronisation
    except TimeoutError:
        pytest.fail(f"still not so after {timeout_s} s: {attempt.__doc__}")


async def wait_for_stream_leaders(cluster: Cluster, url: str) -> None:
    """Until every nexec stream answers through ``url`` with a leader, checking that
    each keeps 3 replicas."""
    nc = await nats.connect(url, **cluster.auth.connect_options("controller"))
    js = nc.jetstream(timeout=2)
    try:
        for stream in STREAMS:

            async def has_leader(stream: str = stream) -> bool:
                """the stream has a leader"""
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3, stream
                return info.cluster is not None and bool(info.cluster.leader)

            await retry_until(has_leader)
    finally:
        await nc.close()


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

        cluster.servers[1].stop()  # node 2, where a2 is connected
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
