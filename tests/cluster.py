"""A 3-node NATS cluster from deploy/nats/cluster/, for the tests that lose a node.

The servers run the repository's configs with the users, TLS and signing keys
of ``nexec nats-auth``; only their JetStream directories point at temporary ones
and their route ports at free ones (client ports are chosen by the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from agentd.agent import Agent
from agentd.config import AgentConfig
from nexec.dev.processes import ManagedProcess, start_nats_server
from tests.deployed_nats import GeneratedAuth, deploy_config

ROUTE_PORTS = ("6222", "6223", "6224")
STREAMS = ("nexec_jobs", "nexec_results", "nexec_audit", "KV_nexec_agents")


@dataclass
class Cluster:
    servers: list[ManagedProcess]
    urls: list[str]
    auth: GeneratedAuth

    @property
    def all_urls(self) -> str:
        """Every node's URL, as one ``nats_url`` setting."""
        return ",".join(self.urls)

    def node_of(self, url: str) -> int:
        """The index of the node a client's ``connected_url`` names."""
        return next(i for i, node_url in enumerate(self.urls) if node_url.endswith(url))


def run_cluster(
    tmp_path: Path, free_port: Callable[[], int], agents: list[str]
) -> Iterator[Cluster]:
    """Start the three nodes, with NATS users for ``agents``; stop them at the end."""
    auth = GeneratedAuth.write(tmp_path / "generated", agents)
    route_ports = {f"127.0.0.1:{port}": f"127.0.0.1:{free_port()}" for port in ROUTE_PORTS}
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


async def wait_for_jetstream(cluster: Cluster) -> None:
    """Until JetStream answers (the cluster elected its meta leader), so that a
    controller started next sets up at its first try."""
    nc = await nats.connect(cluster.urls[0], **cluster.auth.connect_options("controller"))

    async def answers() -> bool:
        """JetStream answers"""
        await nc.jetstream(timeout=2).account_info()
        return True

    try:
        await retry_until(answers)
    finally:
        await nc.close()


async def stream_leaders(cluster: Cluster, url: str) -> dict[str, str]:
    """Until every nexec stream answers through ``url`` with a leader (checking that
    each keeps 3 replicas): stream name -> the leading server's name."""
    nc = await nats.connect(url, **cluster.auth.connect_options("controller"))
    js = nc.jetstream(timeout=2)
    leaders: dict[str, str] = {}
    try:
        for stream in STREAMS:

            async def has_leader(stream: str = stream) -> bool:
                """the stream has a leader"""
                info = await js.stream_info(stream)
                assert info.config.num_replicas == 3, stream
                if info.cluster is None or not info.cluster.leader:
                    return False
                leaders[stream] = info.cluster.leader
                return True

            await retry_until(has_leader)
    finally:
        await nc.close()
    return leaders


async def wait_for_stream_leaders(cluster: Cluster, url: str) -> None:
    """Until every nexec stream answers through ``url`` with a leader."""
    await stream_leaders(cluster, url)


def node_named(server_name: str) -> int:
    """The index of the node whose ``server_name`` (``nexec-n1``...) a leader names."""
    return int(server_name.removeprefix("nexec-n")) - 1


async def move_leader(cluster: Cluster, url: str, stream: str, node: int) -> None:
    """Have ``stream``'s leader step down until it is ``node`` (a test arranging
    which node it kills)."""
    nc = await nats.connect(url, **cluster.auth.connect_options("controller"))
    js = nc.jetstream(timeout=2)
    preferred = f"nexec-n{node + 1}"
    request = json.dumps({"placement": {"preferred": preferred}}).encode()

    async def moved() -> bool:
        """the stream's leader moved to the preferred node"""
        info = await js.stream_info(stream)
        if info.cluster is not None and info.cluster.leader == preferred:
            return True
        await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", request, timeout=2)
        return False

    try:
        await retry_until(moved)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def cluster_agents(
    cluster: Cluster, state_dir: Path, hostnames: list[str], **settings: Any
) -> AsyncIterator[list[Agent]]:
    """In-process agents given every node's URL (they connect to any), stopped at the end."""
    agents = [
        Agent(
            AgentConfig(
                nats_url=cluster.all_urls,
                hostname=hostname,
                state_dir=state_dir / hostname,
                **cluster.auth.settings(f"agent-{hostname}"),
                **settings,
            )
        )
        for hostname in hostnames
    ]
    try:
        for agent in agents:
            await agent.start()
        yield agents
    finally:
        for agent in agents:
            await agent.stop()
