"""The real ``nexec-agentd`` process: bounded memory under huge output, replies that
fit NATS, and its command line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from nexec.dev.processes import ManagedProcess
from tests.helpers import Controller, LiveAgentProcess


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        match = re.search(r"^VmHWM:\s+(\d+) kB$", status.read(), re.MULTILINE)
    assert match is not None
    return int(match[1]) * 1024


async def test_50mb_of_output_is_capped_and_memory_stays_bounded(
    controller: Controller, live_agent_process: LiveAgentProcess
) -> None:
    agent = await live_agent_process(controller, "big-1")
    warm = await controller.exec("big-1", {"command": "true"})
    assert warm.status == 202
    peak_before = peak_rss_bytes(agent.pid)
    # NUL bytes become six characters each in JSON: the reply must still fit.
    response = await controller.exec(
        "big-1", {"command": "sh", "args": ["-c", "head -c 50000000 /dev/zero; echo END >&2"]}
    )
    [result] = response.body["results"]
    assert result["status"] == "completed"
    assert result["exit_code"] == 0
    assert result["stdout_truncated"] is True
    assert result["stdout_bytes"] == 50_000_000
    assert result["stderr"] == "END\n"
    assert len(result["stdout"].encode()) < 300 * 1024
    growth = peak_rss_bytes(agent.pid) - peak_before
    assert growth < 20 * 1024 * 1024, f"agent peak RSS grew by {growth} bytes"


async def test_invalid_utf8_is_replaced(
    controller: Controller, live_agent_process: LiveAgentProcess
) -> None:
    await live_agent_process(controller, "utf-1")
    response = await controller.exec("utf-1", {"command": "printf", "args": ["a\\377b"]})
    [result] = response.body["results"]
    assert result["stdout"] == "a\ufffdb"
    assert result["stdout_bytes"] == 3


def test_invalid_settings_exit_2_with_a_clear_message() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "agentd", "--hostname", "bad host", "--label", "novalue"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert "invalid hostname 'bad host'" in completed.stderr
    assert "invalid label 'novalue'" in completed.stderr


def test_sigterm_stops_an_agent_that_cannot_reach_nats(unused_tcp_port: int) -> None:
    agent = ManagedProcess(
        [sys.executable, "-m", "agentd", "--nats-url", f"nats://127.0.0.1:{unused_tcp_port}"],
        name="agent",
    )
    try:
        agent.wait_for_line(re.compile(r"Connect call failed"), 30)
        assert agent.stop(timeout_s=30) == 0
        assert agent.popen.returncode == 0
    finally:
        agent.stop(signum=signal.SIGKILL)
