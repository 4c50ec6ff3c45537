"""The ``nexec`` command on a terminal: progress line and colour, checked by running it
under a pseudo-terminal; neither when its output is not a terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

from tests.cli_process import cli_env, fleet, nexec
from tests.helpers import STARTUP_TIMEOUT_S, Controller, MakeAgent, MakeController

__all__ = ["fleet"]  # the fixture, imported for pytest


async def run_in_pty(controller: Controller, tmp_path: Path, *argv: str, **env: str) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal; all it wrote there."""
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nexec.cli", *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=slave,
        env=cli_env(controller, tmp_path) | env,
    )  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    ended = asyncio.get_running_loop().create_future()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every writer is gone
            data = b""
        if data:
            chunks.append(data)
        elif not ended.done():
            ended.set_result(None)

    asyncio.get_running_loop().add_reader(master, readable)
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            await ended
            await process.wait()
    finally:
        asyncio.get_running_loop().remove_reader(master)
        os.close(master)
    return b"".join(chunks).decode()


async def test_progress_and_colour_on_a_terminal_only(fleet: Controller, tmp_path: Path) -> None:
    on_tty = await run_in_pty(fleet, tmp_path, "shell", "role:web", "echo hi")
    assert "/3 answered" in on_tty
    assert "\x1b[36mweb1:\x1b[0m" in on_tty
    # The progress line is cleared at the end; the summary, coloured, is the last line.
    assert on_tty.rsplit("\r\x1b[K", 1)[1] == "3 hosts: \x1b[32m3 completed\x1b[0m\r\n"
    no_colour = await run_in_pty(fleet, tmp_path, "shell", "role:web", "echo hi", NO_COLOR="1")
    assert "/3 answered" in no_colour
    assert "\x1b[3" not in no_colour
    piped = await nexec(fleet, tmp_path, "shell", "role:web", "echo hi")
    assert "answered" not in piped.stderr
    assert "\x1b" not in piped.stdout + piped.stderr


async def test_no_progress_line_for_a_key_without_job_read(
    make_controller: MakeController, make_agent: MakeAgent, tmp_path: Path
) -> None:
    controller = await make_controller(keys={"runner": (["command:shell"], [])})
    for host in ("web1", "web2"):
        await make_agent(host, labels={"role": "web"}, allow_shell=True)
    await controller.wait_for_agents("web1", "web2")
    key = controller.extra_keys["runner"]
    on_tty = await run_in_pty(
        controller, tmp_path, "shell", "role:web", "echo hi", NEXEC_API_KEY=key
    )
    assert on_tty.count("lacks job:read") == 1
    assert "answered" not in on_tty
    assert "\x1b[36mweb1:\x1b[0m hi" in on_tty
