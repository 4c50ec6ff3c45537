"""Fixtures: a real nats-server per test, agents and controllers that clean up after themselves.

Everything listens on 127.0.0.1 only. Agents run in-process (``make_agent``)
or as real ``nexec-agentd`` processes (``spawn_agent``) where a test needs to
kill one or to measure its memory; ``live_agent`` and ``live_agent_process``
also wait until a controller's registry lists the agent. What these fixtures
hand out, and every other shared helper, is in :mod:`tests.helpers`: import
from there, never from this module.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from aiohttp import web
from nats.aio.client import Client

from agentd.agent import Agent
from agentd.config import AgentConfig
from agentd.run.executor import Executor
from controller.app import create_app
from controller.appkeys import NATS_LINK
from controller.config import ControllerConfig
from controller.http.server import make_runner
from controller.jobs.records import JobStore
from controller.keys.store import PERMISSIONS, KeyStore, create_key
from nexec.dev.processes import ManagedProcess, start_nats_server
from runtime.streamwriter import StreamWriter
from tests.cluster import Cluster, run_cluster
from tests.helpers import (
    AGENT_READY_RE,
    RECONNECT_WAIT_S,
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeAgent,
    MakeController,
    NatsServer,
    SpawnAgent,
)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream on a random loopback port."""
    process, url = start_nats_server(tmp_path / "nats")
    server = NatsServer(process, url)
    yield server
    server.stop()


@pytest.fixture
def cluster(tmp_path: Path, unused_tcp_port_factory: Callable[[], int]) -> Iterator[Cluster]:
    """A 3-node NATS cluster (:mod:`tests.cluster`) with NATS users for agents a1..a3."""
    yield from run_cluster(tmp_path, unused_tcp_port_factory, ["a1", "a2", "a3"])


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A plain nats-py client, as a program publishing on NATS directly would use."""
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def record_streams(nc: Client) -> None:
    """The job and results streams, made as a controller with the default settings
    makes them, for tests that run jobs with agents but no controller: the agents'
    results are then recorded as in a fleet, rather than written again and again
    until the agent stops and counts them lost."""
    config = ControllerConfig()
    writer = StreamWriter(nc, timeout_s=config.jetstream_timeout_s)
    await JobStore(nc.jetstream(), writer, config.subjects).ensure_streams(
        retention_s=config.job_retention_s,
        replicas=config.jetstream_replicas,
        jobs_max_bytes=config.jobs_max_bytes,
        results_max_bytes=config.results_max_bytes,
    )


@pytest.fixture(autouse=True)
def agent_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The agents' ``state_dir`` in this test (also for agent processes it starts):
    never the real ``/var/lib/nexec-agent``."""
    path = tmp_path / "agent-state"
    monkeypatch.setenv("NEXEC_STATE_DIR", str(path))
    return path


@pytest.fixture
async def make_agent(nats_server: NatsServer, agent_state_dir: Path) -> AsyncIterator[MakeAgent]:
    """Start in-process agents: ``await make_agent("web1", labels={"role": "web"})``."""
    agents: list[Agent] = []

    async def factory(
        hostname: str = "agent-1",
        labels: dict[str, str] | None = None,
        executor: Executor | None = None,
        **settings: Any,
    ) -> Agent:
        settings.setdefault("heartbeat_interval_s", 30.0)
        settings.setdefault("kill_grace_s", 0.5)
        settings.setdefault("reconnect_wait_s", RECONNECT_WAIT_S)
        settings.setdefault("state_dir", agent_state_dir / hostname)
        config = AgentConfig(
            nats_url=nats_server.url, hostname=hostname, labels=labels or {}, **settings
        )
        agent = Agent(config, executor)
        agents.append(agent)
        await agent.start()
        return agent

    yield factory
    for agent in agents:
        await agent.stop()


@pytest.fixture
def spawn_agent(nats_server: NatsServer, agent_state_dir: Path) -> Iterator[SpawnAgent]:
    """Start real ``nexec-agentd`` processes; each is stopped (or already killed) at the end.
    An agent started again with the same hostname has the same ``state_dir``."""
    processes: list[ManagedProcess] = []

    def factory(hostname: str, *extra_args: str) -> ManagedProcess:
        process = ManagedProcess(
            [
                sys.executable, "-m", "agentd",
                "--nats-url", nats_server.url,
                "--hostname", hostname,
                "--heartbeat-interval", "30",
                "--reconnect-wait", str(RECONNECT_WAIT_S),
                "--state-dir", str(agent_state_dir / hostname),
                *extra_args,
            ],
            name=f"agent {hostname}",
        )  # fmt: skip
        processes.append(process)
        process.wait_for_line(AGENT_READY_RE, STARTUP_TIMEOUT_S)
        return process

    yield factory
    for process in processes:
        process.stop()


@pytest.fixture
def live_agent(make_agent: MakeAgent) -> LiveAgent:
    """Start an in-process agent and return once ``controller``'s registry lists it:
    ``await live_agent(controller, "web1", labels={"role": "web"}, **settings)``
    (the arguments after ``controller`` are :func:`make_agent`'s)."""

    async def factory(controller: Controller, hostname: str = "agent-1", **kwargs: Any) -> Agent:
        agent = await make_agent(hostname, **kwargs)
        await controller.wait_for_agents(hostname)
        return agent

    return factory


@pytest.fixture
def live_agent_process(spawn_agent: SpawnAgent) -> LiveAgentProcess:
    """Start a ``nexec-agentd`` process and return once ``controller``'s registry lists
    it: ``await live_agent_process(controller, "web1", *extra_args)``. The event loop
    runs on while the process starts."""

    async def factory(controller: Controller, hostname: str, *extra_args: str) -> ManagedProcess:
        process = await asyncio.to_thread(spawn_agent, hostname, *extra_args)
        await controller.wait_for_agents(hostname)
        return process

    return factory


@pytest.fixture
async def make_controller(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MakeController]:
    """Start controllers on 127.0.0.1:<free port>, waiting until NATS is connected
    (unless ``wait_for_nats=False``). ``keys`` adds named keys: name -> (perms, targets).
    ``restart_of`` (a controller closed before) starts its successor on the same port
    with the same keys file and keys, as a restarted process would be."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(
        *,
        nats_url: str | None = None,
        wait_for_nats: bool = True,
        keys: dict[str, tuple[list[str], list[str]]] | None = None,
        restart_of: Controller | None = None,
        **settings: Any,
    ) -> Controller:
        if restart_of is None:
            port = 0
            keys_file = tmp_path / f"keys-{len(runners)}-{uuid.uuid4().hex}.json"
            api_key = create_key(
                keys_file, name="admin", permissions=sorted(PERMISSIONS), targets=[]
            )
            extra_keys = {
                name: create_key(keys_file, name=name, permissions=perms, targets=targets)
                for name, (perms, targets) in (keys or {}).items()
            }
        else:
            port = int(restart_of.url.rpartition(":")[2])
            keys_file, api_key = restart_of.keys_file, restart_of.api_key
            extra_keys = restart_of.extra_keys
        settings.setdefault("metrics_cache_s", 0.0)  # each scrape sees the requests before it
        settings.setdefault("reconnect_wait_s", RECONNECT_WAIT_S)
        config = ControllerConfig(
            nats_url=nats_url or nats_server.url,
            listen="127.0.0.1:0",
            keys_file=keys_file,
            **settings,
        )
        app = create_app(config, KeyStore.load(keys_file))
        runner = make_runner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        port = runner.addresses[0][1]
        if wait_for_nats:
            await asyncio.wait_for(app[NATS_LINK].ready.wait(), STARTUP_TIMEOUT_S)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Controller(
            url=f"http://127.0.0.1:{port}",
            app=app,
            runner=runner,
            session=session,
            api_key=api_key,
            keys_file=keys_file,
            extra_keys=extra_keys,
        )

    yield factory
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def controller(make_controller: MakeController) -> Controller:
    return await make_controller()


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Fifo]:
    """A FIFO at ``tmp_path / "started"`` for commands to say they are running."""
    fifo = await Fifo.open(tmp_path / "started")
    yield fifo
    fifo.close()
