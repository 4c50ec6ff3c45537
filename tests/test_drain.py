"""SIGTERM on the controller: new requests get 503, the one in flight finishes, a live
output stream ends at once (its client resumes elsewhere)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Fifo,
    MakeAgent,
    NatsServer,
    gated,
    told_then_gated,
)


def start_controller(nats_server: NatsServer, keys_file: Path) -> ManagedProcess:
    """A controller process on a free port (its ``ready`` line says which)."""
    return ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_server.url,
         "--listen", "127.0.0.1:0", "--keys-file", str(keys_file)],
        name="controller",
    )  # fmt: skip


async def ready_with_agent(controller: ManagedProcess, make_agent: MakeAgent) -> str:
    """Once ``controller`` listens and lists agent ``d1``: its base URL."""
    ready = await asyncio.to_thread(controller.wait_for_line, CONTROLLER_READY_RE, 30)
    await make_agent("d1")
    await asyncio.to_thread(controller.wait_for_line, re.compile("agent joined: d1"), 30)
    return f"http://127.0.0.1:{ready['port']}"


async def exit_code(controller: ManagedProcess) -> int:
    """Raises: AssertionError (with its output) when it did not exit within 30 s."""
    try:
        return await asyncio.to_thread(controller.popen.wait, 30)
    except subprocess.TimeoutExpired:
        raise AssertionError(controller.output_tail()) from None


async def test_controller_drains_on_sigterm(
    nats_server: NatsServer, make_agent: MakeAgent, started: Fifo, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
    gate = tmp_path / "gate"  # the job in flight runs until the test removes it
    gate.mkdir()
    controller = start_controller(nats_server, keys_file)
    try:
        url = f"{await ready_with_agent(controller, make_agent)}/node/d1/command/exec"
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
        assert await exit_code(controller) == 0
        summary = re.compile(r"stopped: served=\d+ in_flight=0 refused_while_draining=1")
        await asyncio.to_thread(controller.wait_for_line, summary, 10)
    finally:
        await asyncio.to_thread(controller.stop)


async def test_a_live_output_stream_does_not_hold_the_stop(
    nats_server: NatsServer, make_agent: MakeAgent, started: Fifo, tmp_path: Path
) -> None:
    """The job runs until the test lets it end; its stream ends and the controller stops
    while it runs."""
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
    gate = tmp_path / "gate"
    gate.mkdir()
    controller = start_controller(nats_server, keys_file)
    try:
        base = await ready_with_agent(controller, make_agent)
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/x-ndjson"}
        body = {"command": "sh", "args": ["-c", told_then_gated(started, gate)], "timeout": 300}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(f"{base}/node/d1/command/exec?wait=false", json=body) as r:
                job_id = (await r.json())["job_id"]
            await started.lines(1)
            async with session.get(f"{base}/job/{job_id}/output") as stream:
                controller.popen.send_signal(signal.SIGTERM)
                async with asyncio.timeout(STARTUP_TIMEOUT_S):  # else held until the job ends
                    events = [json.loads(line) async for line in stream.content]
            assert await exit_code(controller) == 0
        assert events == []  # ended while the job runs: the client resumes elsewhere
    finally:
        gate.rmdir()
        await asyncio.to_thread(controller.stop)
