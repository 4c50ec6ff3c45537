"""Fixtures: a real nats-server per test, agents and controllers that clean up after themselves.

Everything listens on 127.0.0.1 only. Agents run in-process (``make_agent``)
or as real ``nexec-agentd`` processes (``spawn_agent``) where a test needs to
kill one or to measure its memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nats
import psutil
import pytest
from aiohttp import web
from nats.aio.client import Client

from agentd.agent import Agent
from agentd.config import AgentConfig
from agentd.run.executor import Executor
from controller import ControllerConfig, KeyStore, create_app, create_key
from controller.appkeys import NATS_LINK, REGISTRY
from controller.http.server import make_runner
from controller.keys.store import PERMISSIONS
from controller.registry.view import Registry
from nexec.dev.processes import ManagedProcess, start_nats_server
from tests.cluster import Cluster, run_cluster

STARTUP_TIMEOUT_S = 20.0
AGENT_READY_RE = re.compile(r"nexec-agentd ready")


@dataclass
class NatsServer:
    process: ManagedProcess
    url: str

    def stop(self) -> None:
        self.process.stop()


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


async def recorded_result(nc: Client, job_id: str, hostname: str) -> dict[str, Any]:
    """The host's result of the job as the results stream holds it, once it is there."""
    subscription = await nc.jetstream().subscribe(
        f"nexec.record.result.{job_id}.{hostname}", ordered_consumer=True
    )
    message = await subscription.next_msg(timeout=20)
    await subscription.unsubscribe()
    result: dict[str, Any] = json.loads(message.data)
    return result


MakeAgent = Callable[..., Awaitable[Agent]]


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


SpawnAgent = Callable[..., ManagedProcess]


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


@dataclass
class Response:
    status: int
    body: Any


@dataclass
class Controller:
    """A running controller and an HTTP client with a key that may do everything."""

    url: str
    app: web.Application
    runner: web.AppRunner
    session: aiohttp.ClientSession
    api_key: str
    keys_file: Path
    extra_keys: dict[str, str] = field(default_factory=dict)

    async def close(self) -> None:
        """Stop this controller as a restart or a crash of its process would."""
        await self.runner.cleanup()

    @property
    def registry(self) -> Registry:
        return self.app[REGISTRY]

    async def wait_for_agents(self, *hostnames: str) -> None:
        """Until every named agent is in this controller's registry."""
        await self.registry.wait_until(
            lambda registry: set(hostnames).issubset(hb.hostname for hb in registry.live()),
            STARTUP_TIMEOUT_S,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = {"Authorization": f"Bearer {key or self.api_key}"}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        async with self.session.request(
            method, self.url + path, json=json, data=data, headers=all_headers
        ) as response:
            body = None if response.status == 204 else await response.json()
            return Response(response.status, body)

    async def exec(self, target: str, body: Any, *, key: str | None = None) -> Response:
        return await self.request("POST", f"/node/{target}/command/exec", json=body, key=key)


MakeController = Callable[..., Awaitable[Controller]]


@pytest.fixture
async def make_controller(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[MakeController]:
    """Start controllers on 127.0.0.1:<free port>, waiting until NATS is connected
    (unless ``wait_for_nats=False``). ``keys`` adds named keys: name -> (perms, targets)."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def factory(
        *,
        nats_url: str | None = None,
        wait_for_nats: bool = True,
        keys: dict[str, tuple[list[str], list[str]]] | None = None,
        **settings: Any,
    ) -> Controller:
        keys_file = tmp_path / f"keys-{len(runners)}-{uuid.uuid4().hex}.json"
        api_key = create_key(keys_file, name="admin", permissions=sorted(PERMISSIONS), targets=[])
        extra_keys = {
            name: create_key(keys_file, name=name, permissions=perms, targets=targets)
            for name, (perms, targets) in (keys or {}).items()
        }
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
        site = web.TCPSite(runner, "127.0.0.1", 0)
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


class Fifo:
    """A named pipe that commands write lines into and the test reads, in the event
    loop and with a bound, so a test never blocks a thread forever.

    Opened read-write: the test's reader never sees end-of-file between two
    writers, and no writer ever meets a pipe without a reader.
    """

    def __init__(self, path: Path, reader: asyncio.StreamReader, transport: Any) -> None:
        self.path = path
        self._reader = reader
        self._transport = transport

    @classmethod
    async def open(cls, path: Path) -> Fifo:
        os.mkfifo(path)
        pipe = os.fdopen(os.open(path, os.O_RDWR | os.O_NONBLOCK), "rb", buffering=0)
        reader = asyncio.StreamReader()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        return cls(path, reader, transport)

    async def lines(self, count: int, timeout_s: float = STARTUP_TIMEOUT_S) -> list[str]:
        """The next ``count`` lines written, from any writers, in the order they came."""
        async with asyncio.timeout(timeout_s):
            return [(await self._reader.readline()).decode().rstrip("\n") for _ in range(count)]

    def close(self) -> None:
        self._transport.close()


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[Fifo]:
    """A FIFO at ``tmp_path / "started"`` for commands to say they are running."""
    fifo = await Fifo.open(tmp_path / "started")
    yield fifo
    fifo.close()


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody reaps), else False
    after ``timeout_s``. A process that is not our child offers nothing to wait on,
    so this polls /proc, bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
