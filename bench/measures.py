"""The nexec measures N1-N5: a real nats-server, a real controller process, real or
simulated agents, and HTTP load from a separate process."""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Sizes, rss_mb, run_load, start_child
from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess, start_nats_server
from nexec.dev.stack import CONTROLLER_READY_RE

AGENTS_PER_FLEET_PROCESS = 2500
STARTUP_TIMEOUT_S = 600.0


@dataclass
class Stack:
    url: str
    nats_url: str
    key: str
    controller: ManagedProcess
    work: Path
    """The stack's temporary directory."""

    @property
    def auth(self) -> list[str]:
        return [f"Authorization:Bearer {self.key}"]

    def exec_url(self, target: str) -> str:
        return f"{self.url}/node/{target}/command/exec"

    def live_agents(self) -> int:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            return int(json.load(response)["agents"])

    def wait_for_agents(self, count: int) -> None:
        """Poll /healthz until the controller sees exactly ``count`` agents."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while self.live_agents() != count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the controller never saw {count} agents")
            time.sleep(0.2)


@contextmanager
def nexec_stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="nexec-bench-") as tmp, ExitStack() as children:
        work = Path(tmp)
        key = create_key(
            work / "keys.json", name="bench", permissions=sorted(PERMISSIONS), targets=[]
        )
        nats, nats_url = start_nats_server(work / "nats")
        children.callback(nats.stop)
        controller, url = start_controller(work, nats_url)
        children.callback(controller.stop)
        stack = Stack(url, nats_url, key, controller, work)
        yield stack


Measure = Callable[[Stack, Sizes], dict[str, Any]]
"""One measure of nexec on a running stack."""


def on_own_stack(measure: Measure, sizes: Sizes) -> dict[str, Any]:
    """``measure`` on a stack of its own (nats-server, a controller), stopped after."""
    with nexec_stack() as stack:
        return measure(stack, sizes)


def measure_main(prog: str, measure: Measure) -> int:
    """``python -m bench.X [--quick]``: ``measure`` on a stack of its own, its JSON on
    stdout."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes.full()
    print(json.dumps(on_own_stack(measure, sizes), indent=2))
    return 0


def start_controller(work: Path, nats_url: str, *extra: str) -> tuple[ManagedProcess, str]:
    """A controller process on ``nats_url`` with the keys file in ``work``, answering
    HTTP with NATS connected; it and its URL. The caller stops it.

    Raises:
        ProcessFailed, OSError: it did not start or answer in time.
    """
    controller = ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_url, "--listen",
         "127.0.0.1:0", "--keys-file", str(work / "keys.json"), "--rate-limit", "0", *extra],
        name="controller",
    )  # fmt: skip
    ready = controller.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
    url = f"http://127.0.0.1:{ready['port']}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=10).close()  # 503 until NATS
            return controller, url
        except OSError:
            if time.monotonic() > deadline:
                controller.stop()
                raise
            time.sleep(0.1)


def exec_body(command: str, *args: str, **extra: Any) -> str:
    return json.dumps({"command": command, "args": list(args), **extra})


def measure_one_host(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N1, N5 (1 MB from one host) and the idle agent of N4, on one real agent."""
    agent = ManagedProcess(
        [sys.executable, "-m", "agentd", "--nats-url", stack.nats_url, "--hostname", "bench-1",
         "--log-level", "WARNING", "--state-dir", str(stack.work / "agent-state")],
        name="agent",
    )  # fmt: skip
    try:
        stack.wait_for_agents(1)
        idle_agent_rss = rss_mb(agent.pid)
        url, body = stack.exec_url("bench-1"), exec_body("/bin/true")
        c1 = run_load(url, concurrency=1, requests=sizes.http_requests_c1, body=body,
                      headers=stack.auth, tally_results=True)  # fmt: skip
        c32 = run_load(url, concurrency=32, requests=sizes.http_requests_c32, body=body,
                       headers=stack.auth, tally_results=True)  # fmt: skip
        big = exec_body("sh", "-c", f"head -c {sizes.big_output_bytes} /dev/zero | tr '\\0' x")
        big_output = run_load(url, concurrency=1, requests=sizes.repeats, body=big,
                              headers=stack.auth, warmup=1, tally_results=True)  # fmt: skip
        return {"N1": {"c1": c1, "c32": c32}, "N5_one_host_1MB": big_output,
                "N4_idle_agent_rss_mb": idle_agent_rss}  # fmt: skip
    finally:
        agent.stop()
        stack.wait_for_agents(0)


def start_fleet(stack: Stack, count: int, name: str, *extra: str) -> list[ManagedProcess]:
    """Simulated agents in processes of at most AGENTS_PER_FLEET_PROCESS each."""
    fleets = []
    for index, start in enumerate(range(0, count, AGENTS_PER_FLEET_PROCESS)):
        size = min(AGENTS_PER_FLEET_PROCESS, count - start)
        process, _ = start_child(
            [
                "bench.fleet",
                stack.nats_url,
                "--count",
                str(size),
                "--name",
                f"{name}{index}",
                *extra,
            ],
            f"fleet-{name}{index}",
        )
        fleets.append(process)
    return fleets


def stop_fleets(stack: Stack, fleets: list[ManagedProcess]) -> None:
    for fleet in fleets:
        fleet.stop(timeout_s=120)
    stack.wait_for_agents(0)


def measure_any_and_memory(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N2 (_any over 3 no-spawn agents) and the controller's memory over many jobs (N4)."""
    fleets = start_fleet(stack, 3, "any")
    try:
        stack.wait_for_agents(3)
        url, body = stack.exec_url("_any"), exec_body("true")
        idle_controller = rss_mb(stack.controller.pid)
        any_c32 = run_load(url, concurrency=32, requests=sizes.http_requests_c32, body=body,
                           headers=stack.auth, tally_results=True)  # fmt: skip
        run_load(url, concurrency=32, requests=sizes.controller_jobs_checkpoint, body=body,
                 headers=stack.auth, warmup=0)  # fmt: skip
        after_checkpoint = rss_mb(stack.controller.pid)
        rest = sizes.controller_jobs - sizes.controller_jobs_checkpoint
        run_load(url, concurrency=32, requests=rest, body=body, headers=stack.auth, warmup=0)
        after_all = rss_mb(stack.controller.pid)
    finally:
        stop_fleets(stack, fleets)
    return {
        "N2_any_c32": any_c32,
        "N4_controller_rss_mb": {
            "idle": idle_controller,
            f"after_{sizes.controller_jobs_checkpoint}": after_checkpoint,
            f"after_{sizes.controller_jobs}": after_all,
        },
    }


def measure_many_outputs(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N5: many hosts each returning output_host_bytes."""
    fleets = start_fleet(stack, sizes.output_hosts, "out", "--stdout-bytes",
                         str(sizes.output_host_bytes))  # fmt: skip
    try:
        stack.wait_for_agents(sizes.output_hosts)
        return run_load(stack.exec_url("_all"), concurrency=1, requests=sizes.repeats,
                        body=exec_body("true"), headers=stack.auth, warmup=1,
                        tally_results=True)  # fmt: skip
    finally:
        stop_fleets(stack, fleets)


def measure_fleets(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N3: _all to growing simulated fleets."""
    results: dict[str, Any] = {}
    fleets: list[ManagedProcess] = []
    present = 0
    try:
        for count in sizes.fleet_counts:
            fleets += start_fleet(stack, count - present, f"n{count}-")
            present = count
            stack.wait_for_agents(count)
            results[str(count)] = run_load(
                stack.exec_url("_all"), concurrency=1, requests=sizes.repeats,
                body=exec_body("true"), headers=stack.auth, warmup=1, tally_results=True,
            )  # fmt: skip
    finally:
        stop_fleets(stack, fleets)
    return results


def measure_nexec(sizes: Sizes) -> dict[str, Any]:
    with nexec_stack() as stack:
        one_host = measure_one_host(stack, sizes)
        any_and_memory = measure_any_and_memory(stack, sizes)
        many_outputs = measure_many_outputs(stack, sizes)
        fleets = measure_fleets(stack, sizes)
    largest_fleet = max(sizes.fleet_counts)
    return {
        **one_host,
        **any_and_memory,
        "N5_many_hosts": many_outputs,
        "N3_all": fleets,
        "agents_per_fleet_process": AGENTS_PER_FLEET_PROCESS,
        "fleet_processes_max": math.ceil(largest_fleet / AGENTS_PER_FLEET_PROCESS),
    }
