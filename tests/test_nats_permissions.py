"""deploy/nats/single.conf with users from ``nexec nats-auth``: roles can do only their part.

The server runs the repository's config (users, mutual TLS); the test only
points its JetStream directory at a temporary one and picks a free port.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from agentd.agent import Agent
from agentd.config import AgentConfig
from nexec.dev.processes import start_nats_server
from schemas.subjects import AGENT_SERVICE, CONTROLLER_SERVICE, Subjects
from tests.deployed_nats import GeneratedAuth, deploy_config
from tests.helpers import MakeController, service_replies

SRV = Subjects.service_request


@dataclass
class LockedNats:
    url: str
    auth: GeneratedAuth

    def settings(self, user: str) -> dict[str, str]:
        return self.auth.settings(user)


@pytest.fixture
def locked_nats(tmp_path: Path) -> Iterator[LockedNats]:
    auth = GeneratedAuth.write(tmp_path / "generated", ["web1,role:web", "db1,role:db"])
    conf = deploy_config(
        "single.conf", tmp_path, {"/var/lib/nexec/nats": str(tmp_path / "jetstream")}
    )
    server, url = start_nats_server(tmp_path / "unused", config_file=conf)
    yield LockedNats(url, auth)
    server.stop()


async def connect_as(locked: LockedNats, user: str, errors: asyncio.Queue[str]) -> Client:
    async def on_error(exc: Exception) -> None:
        await errors.put(str(exc))

    return await nats.connect(
        locked.url,
        error_cb=on_error,
        allow_reconnect=False,
        **locked.auth.connect_options(user),
    )


@pytest.fixture
async def as_agent(locked_nats: LockedNats) -> AsyncIterator[tuple[Client, asyncio.Queue[str]]]:
    errors: asyncio.Queue[str] = asyncio.Queue()
    client = await connect_as(locked_nats, "agent-web1", errors)
    yield client, errors
    await client.close()


async def test_the_system_works_with_the_generated_users(
    locked_nats: LockedNats, make_controller: MakeController, agent_state_dir: Path
) -> None:
    controller = await make_controller(
        nats_url=locked_nats.url, **locked_nats.settings("controller")
    )
    agent = Agent(
        AgentConfig(
            nats_url=locked_nats.url,
            hostname="web1",
            labels={"role": "web"},
            state_dir=agent_state_dir,
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
    """With a valid client certificate but no user, the server refuses the client."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    client = Client()
    try:
        with pytest.raises(nats.errors.Error):
            await client.connect(
                locked_nats.url,
                allow_reconnect=False,
                error_cb=on_error,
                **locked_nats.auth.connect_options("publisher", with_credentials=False),
            )
    finally:
        await client.close()  # nats-py leaves the refused socket open otherwise
    assert any("authorization violation" in error.lower() for error in errors), errors


async def test_clients_without_a_certificate_are_refused(locked_nats: LockedNats) -> None:
    """Mutual TLS: the right password is not enough without a certificate from the CA
    (the same client with its certificate connects)."""
    publisher = locked_nats.settings("publisher")
    without_certificate = {
        "user": publisher["nats_user"],
        "password": publisher["nats_password"],
        "tls": ssl.create_default_context(cafile=publisher["nats_tls_ca_file"]),
    }
    client = Client()
    try:
        # The server ends the TLS handshake: an SSL alert, or a reset that beats it.
        with pytest.raises(OSError):
            await client.connect(
                locked_nats.url, allow_reconnect=False, max_reconnect_attempts=0,
                **without_certificate,
            )  # fmt: skip
    finally:
        await client.close()
    with_certificate = await nats.connect(
        locked_nats.url, allow_reconnect=False, **locked_nats.auth.connect_options("publisher")
    )
    try:
        assert with_certificate.is_connected
    finally:
        await with_certificate.close()


async def test_an_agent_reports_running_jobs_only_on_its_own_subject(
    as_agent: tuple[Client, asyncio.Queue[str]],
) -> None:
    client, errors = as_agent
    await client.publish("nexec.running.web1", b"{}")
    await client.publish("nexec.running.db1", b"{}")
    await client.flush()
    error = await asyncio.wait_for(errors.get(), 10)
    assert 'permissions violation for publish to "nexec.running.db1"' in error.lower()
    assert errors.empty()  # its own subject was allowed


async def test_discovery_works_with_the_generated_users(
    locked_nats: LockedNats, make_controller: MakeController, agent_state_dir: Path
) -> None:
    """The publisher finds the agent and the controller on ``$SRV`` (ADR-32); the agent
    answers as ``nexec-agent`` under its permissions (through ``allow_responses``)."""
    await make_controller(nats_url=locked_nats.url, **locked_nats.settings("controller"))
    agent = Agent(
        AgentConfig(
            nats_url=locked_nats.url,
            hostname="web1",
            state_dir=agent_state_dir,
            **locked_nats.settings("agent-web1"),
        )
    )
    await agent.start()
    errors: asyncio.Queue[str] = asyncio.Queue()
    publisher = await connect_as(locked_nats, "publisher", errors)
    try:
        [ping] = await service_replies(publisher, SRV("PING", AGENT_SERVICE), expected=1)
        assert (ping["id"], ping["metadata"]["hostname"]) == (agent.instance_id, "web1")
        own = SRV("STATS", AGENT_SERVICE, agent.instance_id)
        [stats] = await service_replies(publisher, own, expected=1)
        assert stats["endpoints"][0]["name"] == "jobs"
        everyone = await service_replies(publisher, SRV("INFO"), expected=2)
        assert sorted(r["name"] for r in everyone) == [AGENT_SERVICE, CONTROLLER_SERVICE]
        assert errors.empty()
    finally:
        await publisher.close()
        await agent.stop()


async def test_an_agent_answers_discovery_only_as_nexec_agent(
    as_agent: tuple[Client, asyncio.Queue[str]],
) -> None:
    """It may read its own service's requests, not a controller's (to answer in its
    name) nor every ``$SRV`` request."""
    client, errors = as_agent
    await client.subscribe(SRV("PING", AGENT_SERVICE, "some-instance"))
    await client.subscribe(SRV("PING", CONTROLLER_SERVICE))
    await client.flush()
    error = await asyncio.wait_for(errors.get(), 10)
    assert 'permissions violation for subscription to "$srv.ping.nexec-controller"' in error.lower()
    await client.subscribe("$SRV.>")
    await client.flush()
    error = await asyncio.wait_for(errors.get(), 10)
    assert 'permissions violation for subscription to "$srv.>"' in error.lower()
    assert errors.empty()  # its own service's subject was allowed


@pytest.mark.parametrize("subject", [SRV("PING"), SRV("STATS", AGENT_SERVICE)])
async def test_an_agent_cannot_ask_for_discovery(
    as_agent: tuple[Client, asyncio.Queue[str]], subject: str
) -> None:
    """Publishing a ``$SRV`` request is not a reply: an agent may not (it learns
    nothing of the fleet from NATS but its own jobs)."""
    client, errors = as_agent
    await client.publish(subject, b"", reply="_INBOX_web1.x")
    await client.flush()
    error = await asyncio.wait_for(errors.get(), 10)
    assert f'permissions violation for publish to "{subject.lower()}"' in error.lower()


async def test_the_publisher_cannot_answer_as_a_service(locked_nats: LockedNats) -> None:
    errors: asyncio.Queue[str] = asyncio.Queue()
    client = await connect_as(locked_nats, "publisher", errors)
    try:
        await client.subscribe(SRV("PING", AGENT_SERVICE))
        await client.flush()
        error = await asyncio.wait_for(errors.get(), 10)
        assert 'permissions violation for subscription to "$srv.ping.nexec-agent"' in error.lower()
    finally:
        await client.close()
