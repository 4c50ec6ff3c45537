"""N6: ``nexec exec HOST -- /bin/true`` start to exit, as a whole process, beside the same
request made by ``python -c`` with aiohttp alone, by curl (when installed), and the bare
interpreter's start-up (``python -c pass``). They take turns, ``sizes.cli_runs`` rounds
after one warm-up round (which writes the bytecode caches), against one real agent; the
p50, p90 and mean wall times are reported, and the mean CPU time (user + system), which
depends less on the machine's other work.

``python -m bench.cli [--quick]`` runs this measure alone.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any

from bench.common import Sizes
from bench.loadgen import percentile
from bench.measures import Stack, exec_body, measure_main, on_own_stack
from nexec.dev.processes import ManagedProcess

HOST = "bench-cli"
AIOHTTP_REQUEST = """
import asyncio, os, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as session:
        async with session.post(sys.argv[1], data=sys.argv[2], headers={
            "Authorization": "Bearer " + os.environ["NEXEC_API_KEY"],
            "Content-Type": "application/json"}) as response:
            await response.read()
            return 0 if response.status == 202 else 1

sys.exit(asyncio.run(main()))
"""


def _timed(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, Any]:
    """p50/p90 wall milliseconds of each command run to its end, ``runs`` times after a
    warm-up; the commands take turns, so that a change in the machine's load touches
    them all alike.

    Raises:
        subprocess.CalledProcessError: a run failed.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpu_ms: dict[str, float] = dict.fromkeys(commands, 0.0)
    for run in range(runs + 1):
        for name, argv in commands.items():
            cpu_before = _children_cpu_ms()
            started = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, timeout=120)
            if run:
                times[name].append((time.perf_counter() - started) * 1000)
                cpu_ms[name] += _children_cpu_ms() - cpu_before
    return {
        name: {"p50_ms": percentile(sorted(t), 0.5), "p90_ms": percentile(sorted(t), 0.9),
               "mean_ms": sum(t) / len(t), "cpu_ms": cpu_ms[name] / runs, "runs": runs}
        for name, t in times.items()
    }  # fmt: skip


def _children_cpu_ms() -> float:
    """CPU time (user + system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def measure_cli(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N6, with its own real agent."""
    agent = ManagedProcess(
        [sys.executable, "-m", "agentd", "--nats-url", stack.nats_url, "--hostname", HOST,
         "--log-level", "WARNING", "--state-dir", str(stack.work / "cli-agent-state")],
        name="agent",
    )  # fmt: skip
    try:
        stack.wait_for_agents(1)
        # Bytecode caches written as on a user's machine (the warm-up run writes them),
        # even where PYTHONDONTWRITEBYTECODE is set, as on this project's machines.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"NEXEC_URL": stack.url, "NEXEC_API_KEY": stack.key}
        url, body = stack.exec_url(HOST), exec_body("/bin/true")
        python = sys.executable
        commands = {
            "python_bare": [python, "-c", "pass"],
            "python_aiohttp_request": [python, "-c", AIOHTTP_REQUEST, url, body],
            "nexec_exec": [python, "-m", "nexec.cli", "exec", HOST, "--", "/bin/true"],
        }
        curl = shutil.which("curl")
        if curl:
            commands["curl"] = [
                curl, "-sf", "-X", "POST", url, "-H", f"Authorization: Bearer {stack.key}",
                "-H", "Content-Type: application/json", "-d", body,
            ]  # fmt: skip
        report: dict[str, Any] = _timed(commands, env, sizes.cli_runs)
        return report
    finally:
        agent.stop()
        stack.wait_for_agents(0)


def measure_cli_alone(sizes: Sizes) -> dict[str, Any]:
    """N6 on a stack of its own (nats-server, a controller, one agent)."""
    return on_own_stack(measure_cli, sizes)


def main() -> int:
    return measure_main("python -m bench.cli", measure_cli)


if __name__ == "__main__":
    raise SystemExit(main())
