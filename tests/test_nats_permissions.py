"""deploy/nats/single.conf with users from ``nexec nats-auth``: roles can do only their part.

The server runs the repository's config; the test only points its JetStream
directory at a temporary one and picks a free port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.natsauth import AgentSpec, write_nats_auth
from controller.processes import start_nats_server
from schemas import Subjects
from tests.conftest import MakeController

DEPLOY_NATS = Path(__file__).parent.parent / "deploy" / "nats"


@dataclass
class LockedNats:
    url: str
    env: dict[str, dict[str, str]]
    """NEXEC_NATS_* settings per user name."""

    def settings(self, user: str) -> dict[str, str]:
        return {key.removeprefix("NEXEC_").lower(): value for key, value in self.env[user].items()}


@pytest.fixture
def locked_nats(tmp_path: Path) -> Iterator[LockedNats]:
    agents = [AgentSpec.parse("web1,role:web"), AgentSpec.parse("db1,role:db")]
    written = write_nats_auth(tmp_path / "generated", Subjects(), agents)
    conf = (DEPLOY_NATS / "single.conf").read_text()
    (tmp_path / "single.conf").write_text(
        conf.replace("/var/lib/nexec/nats", str(tmp_path / "jetstream"))
    )
    server, url = start_nats_server(tmp_path / "unused", config_file=tmp_path / "single.conf")
    env = {
        path.stem: dict(line.split("=", 1) for line in path.read_text().splitlines())
        for path in written
        if path.suffix == ".env"
    }
    yield LockedNats(url, env)
    server.stop()


async def connect_as(locked: LockedNats, user: str, errors: asyncio.Queue[str]) -> Client:
    env = locked.env[user]

    async def on_error(exc: Exception) -> None:
        await errors.put(str(exc))

    return await nats.connect(
        locked.url,
        user=env["NEXEC_NATS_USER"],
        password=env["NEXEC_NATS_PASSWORD"],
        inbox_prefix=env.get("NEXEC_NATS_INBOX_PREFIX", "_INBOX"),
        error_cb=on_error,
        allow_reconnect=False,
    )


@pytest.fixture
async def as_agent(locked_nats: LockedNats) -> AsyncIterator[tuple[Client, asyncio.Queue[str]]]:
    errors: asyncio.Queue[str] = asyncio.Queue()
    client = await connect_as(locked_nats, "agent-web1", errors)
    yield client, errors
    await client.close()


async def test_the_system_works_with_the_generated_users(
    locked_nats: LockedNats, make_controller: MakeController
) -> None:
    controller = await make_controller(
        nats_url=locked_nats.url, **locked_nats.settings("controller")
    )
    agent = Agent(
        AgentConfig(
            nats_url=locked_nats.url,
            hostname="web1",
            labels={"role": "web"},
            **locked_nats.settings("agent-web1"),
        )
    )
    await agent.start()
    try:
        await controller.wait_for_agents("web1")
        response = await controller.exec("role:web", {"command": "echo", "args": ["allowed"]})
        [result] = response.body["results"]
        assert (result["status"], result["stdout"]) == ("completed", "allowed\n")
        job = await controller.request("GET", f"/job/{response.body['job_id']}")
        assert job.body["results"] == response.body["results"]  # recorded under permissions
    finally:
        await agent.stop()


async def test_an_agent_cannot_publish_a_job(as_agent: tuple[Client, asyncio.Queue[str]]) -> None:
    client, errors = as_agent
    await client.publish("nexec.exec.all", b"{}")
    await client.flush()
    error = await asyncio.wait_for(errors.get(), 10)
    assert 'permissions violation for publish to "nexec.exec.all"' in error.lower()


async def test_an_agent_cannot_read_another_hosts_subject(
    as_agent: tuple[Client, asyncio.Queue[str]],
) -> None:
    client, errors = as_agent
    await client.subscribe("nexec.exec.host.db1")
    await client.flush()
    error = await asyncio.wait_for(errors.get(), 10)
    assert 'permissions violation for subscription to "nexec.exec.host.db1"' in error.lower()


async def test_the_publisher_may_publish_jobs_but_not_results(
    locked_nats: LockedNats,
) -> None:
    errors: asyncio.Queue[str] = asyncio.Queue()
    client = await connect_as(locked_nats, "publisher", errors)
    try:
        await client.publish("nexec.exec.host.web1", b"{}")
        await client.publish("nexec.record.result.j.web1", b"{}")
        await client.flush()
        error = await asyncio.wait_for(errors.get(), 10)
        assert 'permissions violation for publish to "nexec.record.result.j.web1"' in error.lower()
        assert errors.empty()
    finally:
        await client.close()


async def test_anonymous_clients_are_refused(locked_nats: LockedNats) -> None:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    client = Client()
    try:
        with pytest.raises(nats.errors.Error):
            await client.connect(locked_nats.url, allow_reconnect=False, error_cb=on_error)
    finally:
        await client.close()  # nats-py leaves the refused socket open otherwise
    assert any("authorization violation" in error.lower() for error in errors), errors
