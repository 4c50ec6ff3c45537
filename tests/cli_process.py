"""Running the ``nexec`` command as a real process in tests: a 3-agent fleet fixture,
the CLI's environment, and its run to the end (shared by the test_cli* modules)."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import STARTUP_TIMEOUT_S, Controller, MakeAgent

HOSTS = ("web1", "web2", "web10")


@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str


@pytest.fixture
async def fleet(controller: Controller, make_agent: MakeAgent) -> Controller:
    """A controller with agents web1, web2 and web10 (label role:web), shell allowed."""
    for host in HOSTS:
        await make_agent(host, labels={"role": "web"}, allow_shell=True)
    await controller.wait_for_agents(*HOSTS)
    return controller


def cli_env(controller: Controller, tmp_path: Path, key: str | None = None) -> dict[str, str]:
    """The environment of a CLI process: the controller's URL and a key, no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXEC_", "NO_COLOR"))}
    env.update(
        NEXEC_URL=controller.url,
        NEXEC_API_KEY=key or controller.api_key,
        HOME=str(tmp_path),
    )
    return env


async def start_cli(
    controller: Controller, tmp_path: Path, *argv: str, key: str | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nexec.cli", *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=cli_env(controller, tmp_path, key),
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process) -> Ran:
    """Wait for the CLI's end (killing it if it does not end in time)."""
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.communicate()
        raise
    assert process.returncode is not None
    return Ran(process.returncode, stdout.decode(), stderr.decode())


async def nexec(controller: Controller, tmp_path: Path, *argv: str, key: str | None = None) -> Ran:
    """Run ``python -m nexec.cli ARGV`` to its end."""
    return await finish(await start_cli(controller, tmp_path, *argv, key=key))
