"""N8: what recording metrics costs the controller. Two controllers on one nats-server
and one fleet of 3 no-spawn agents, one with metrics on (the default) and one with
``--no-metrics-enabled``; N2's load (``_any``, concurrency 32) goes to each in turn
(on, off, on, off...), and each run reads the loaded controller's CPU time (user +
system, psutil) around it. The figure: the median CPU µs per request of each; the
target: metrics on within 5 % of off.

``python -m bench.metrics_overhead [--quick]`` runs this measure alone.
"""

from __future__ import annotations

import statistics
from typing import Any

import psutil

from bench.common import Sizes, run_load
from bench.measures import (
    Stack,
    exec_body,
    measure_main,
    on_own_stack,
    start_controller,
    start_fleet,
    stop_fleets,
)


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _cpu_us_per_request(stack: Stack, url: str, pid: int, requests: int) -> float:
    """One N2 run against the controller at ``url``: its CPU µs per request."""
    controller = psutil.Process(pid)
    before = _cpu_s(controller)
    report = run_load(f"{url}/node/_any/command/exec", concurrency=32, requests=requests,
                      body=exec_body("true"), headers=stack.auth, warmup=0)  # fmt: skip
    if report["statuses"] != {"202": requests}:
        raise RuntimeError(f"N8: not every request was answered 202: {report['statuses']}")
    return (_cpu_s(controller) - before) * 1e6 / requests


def measure_metrics_overhead(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N8 on ``stack`` (its controller has metrics on) and a second controller without."""
    off, off_url = start_controller(stack.work, stack.nats_url, "--no-metrics-enabled")
    fleets = start_fleet(stack, 3, "metrics")
    try:
        stack.wait_for_agents(3)
        Stack(off_url, stack.nats_url, stack.key, off, stack.work).wait_for_agents(3)
        body, auth = exec_body("true"), stack.auth
        for url in (stack.url, off_url):  # warm both up
            run_load(f"{url}/node/_any/command/exec", concurrency=32, requests=100,
                     body=body, headers=auth, warmup=0)  # fmt: skip
        runs: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(sizes.metrics_runs):
            for name, url, pid in (("on", stack.url, stack.controller.pid),
                                   ("off", off_url, off.pid)):  # fmt: skip
                runs[name].append(_cpu_us_per_request(stack, url, pid, sizes.metrics_requests))
    finally:
        stop_fleets(stack, fleets)
        off.stop()
    return {
        "requests_per_run": sizes.metrics_requests,
        "runs": runs,
        "on_cpu_us_per_request": statistics.median(runs["on"]),
        "off_cpu_us_per_request": statistics.median(runs["off"]),
    }


def measure_metrics_overhead_alone(sizes: Sizes) -> dict[str, Any]:
    """N8 on a stack of its own."""
    return on_own_stack(measure_metrics_overhead, sizes)


def main() -> int:
    return measure_main("python -m bench.metrics_overhead", measure_metrics_overhead)


if __name__ == "__main__":
    raise SystemExit(main())
