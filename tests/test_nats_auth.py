"""Controller and agent authenticate to a nats-server that requires it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.appkeys import NATS_LINK
from nexec.dev.processes import start_nats_server
from tests.helpers import MakeController


@pytest.fixture
def locked_nats(tmp_path: Path) -> Iterator[str]:
    server, url = start_nats_server(
        tmp_path / "nats", extra_args=["--user", "nexec", "--pass", "s3cret"]
    )
    yield url
    server.stop()


async def test_credentials_from_settings_are_used(
    locked_nats: str, make_controller: MakeController, agent_state_dir: Path
) -> None:
    credentials = {"nats_user": "nexec", "nats_password": "s3cret"}
    controller = await make_controller(nats_url=locked_nats, **credentials)
    agent = Agent(
        AgentConfig(
            nats_url=locked_nats, hostname="auth-1", state_dir=agent_state_dir, **credentials
        )
    )
    await agent.start()
    try:
        await controller.wait_for_agents("auth-1")
        response = await controller.exec("auth-1", {"command": "echo", "args": ["in"]})
        assert response.body["results"][0]["stdout"] == "in\n"
    finally:
        await agent.stop()


async def test_wrong_credentials_never_connect(
    locked_nats: str, make_controller: MakeController
) -> None:
    controller = await make_controller(
        nats_url=locked_nats, nats_user="nexec", nats_password="wrong", wait_for_nats=False
    )
    # A refused client can never become ready, however long it tries.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(controller.app[NATS_LINK].ready.wait(), 2)
    response = await controller.exec("auth-1", {"command": "true"})
    assert response.status == 503
