"""SIGTERM on the controller: new requests get 503, the one in flight finishes."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from tests.helpers import Fifo, MakeAgent, NatsServer, gated


async def test_controller_drains_on_sigterm(
    nats_server: NatsServer, make_agent: MakeAgent, started: Fifo, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
    gate = tmp_path / "gate"  # the job in flight runs until the test removes it
    gate.mkdir()
    controller = ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_server.url,
         "--listen", "127.0.0.1:0", "--keys-file", str(keys_file)],
        name="controller",
    )  # fmt: skip
    try:
        ready = await asyncio.to_thread(controller.wait_for_line, CONTROLLER_READY_RE, 30)
        url = f"http://127.0.0.1:{ready['port']}/node/d1/command/exec"
        await make_agent("d1")
        await asyncio.to_thread(controller.wait_for_line, re.compile("agent joined: d1"), 30)
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:

            async def post(body: dict[str, object]) -> tuple[int, dict[str, object]]:
                async with session.post(url, json=body) as response:
                    return response.status, await response.json()

            in_flight = asyncio.ensure_future(
                post(
                    {
                        "command": "sh",
                        "args": ["-c", f"echo go > {started.path}; {gated(gate)}; echo done"],
                    }
                )
            )
            await started.lines(1)
            controller.popen.send_signal(signal.SIGTERM)
            await asyncio.to_thread(controller.wait_for_line, re.compile("draining"), 30)
            refused_status, refused = await post({"command": "true"})
            health_url = url.replace("/node/d1/command/exec", "/healthz")
            async with session.get(health_url) as health:
                assert health.status == 503
                assert (await health.json())["status"] == "shutting down"
            gate.rmdir()
            status, answer = await in_flight
        assert refused_status == 503
        assert refused == {
            "error": "shutting down",
            "details": "the controller is shutting down; retry on another controller",
            "code": 503,
        }
        assert status == 202
        assert answer["results"][0]["stdout"] == "done\n"  # type: ignore[index]
        try:
            exit_code = await asyncio.to_thread(controller.popen.wait, 30)
        except subprocess.TimeoutExpired:
            raise AssertionError(controller.output_tail()) from None
        assert exit_code == 0
        summary = re.compile(r"stopped: served=\d+ in_flight=0 refused_while_draining=1")
        await asyncio.to_thread(controller.wait_for_line, summary, 10)
    finally:
        await asyncio.to_thread(controller.stop)
