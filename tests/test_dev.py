"""``nexec dev`` (what ``make run`` starts): up, usable as printed, and gone after Ctrl-C."""

from __future__ import annotations

import re
import signal
import sys

import aiohttp
import psutil

from controller.processes import ManagedProcess
from tests.conftest import wait_gone

BANNER_END_RE = re.compile(r"Ctrl-C stops everything")


async def test_nexec_dev_runs_the_printed_curl_and_stops_cleanly() -> None:
    dev = ManagedProcess([sys.executable, "-m", "controller.cli", "dev", "--port", "0"], name="dev")
    try:
        dev.wait_for_line(BANNER_END_RE, 60)
        banner = "\n".join(dev.last_lines())
        exec_url = re.search(r"curl -s -X POST (\S+)", banner)
        key = re.search(r"Authorization: Bearer (nxk_\S+)'", banner)
        assert exec_url is not None and key is not None, banner
        assert exec_url[1].startswith("http://127.0.0.1:")
        children = psutil.Process(dev.pid).children(recursive=True)
        assert len(children) == 3, children

        async with (
            aiohttp.ClientSession() as session,
            session.post(
                exec_url[1],
                json={"command": "uname", "args": ["-a"]},
                headers={"Authorization": f"Bearer {key[1]}"},
            ) as response,
        ):
            body = await response.json()
        assert response.status == 202, body
        [result] = body["results"]
        assert result["status"] == "completed"
        assert result["stdout"].startswith("Linux")

        assert dev.stop(timeout_s=30, signum=signal.SIGINT) == 0
        for child in children:
            assert wait_gone(child.pid), f"{child.name()} outlived nexec dev"
    finally:
        dev.stop(timeout_s=30, signum=signal.SIGINT)
