"""N7: a rollout of ``/bin/true`` over simulated hosts (``sizes.rollout_hosts``, 100) with
``batch_size`` ``sizes.rollout_batch`` (10), against the same job without a rollout: the
time to the complete answer (p50 of ``sizes.repeats`` runs each, taking turns) and the
controller's CPU time (user + system, read from /proc through psutil around each request)
per host started.

``python -m bench.rollout [--quick]`` runs this measure alone.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from typing import Any

import psutil

from bench.common import Sizes
from bench.loadgen import percentile
from bench.measures import Stack, exec_body, measure_main, on_own_stack, start_fleet, stop_fleets

TARGET = "bench:roll"
ANSWER_TIMEOUT_S = 600.0


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _run_once(stack: Stack, body: str) -> tuple[float, Counter[str]]:
    """One request to its complete answer: wall ms and the result statuses.

    Raises:
        urllib.error.URLError: the request failed.
    """
    request = urllib.request.Request(
        stack.exec_url(TARGET),
        data=body.encode(),
        headers={"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"},
        method="POST",
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as response:
        answer = json.load(response)
    wall_ms = (time.perf_counter() - started) * 1000
    statuses = Counter(str(result["status"]) for result in answer["results"])
    if not answer.get("complete", False):
        statuses["incomplete answer"] += 1
    return wall_ms, statuses


def _runs(stack: Stack, body: str, sizes: Sizes, controller: psutil.Process) -> dict[str, Any]:
    """One warm-up, then ``sizes.repeats`` runs one after another; the controller's CPU
    is read around them all (its clock ticks are 10 ms: too coarse for one run)."""
    _run_once(stack, body)
    walls: list[float] = []
    statuses: Counter[str] = Counter()
    cpu_before = _cpu_s(controller)
    for _ in range(sizes.repeats):
        wall_ms, seen = _run_once(stack, body)
        walls.append(wall_ms)
        statuses += seen
    cpu_us = (_cpu_s(controller) - cpu_before) * 1e6
    return {
        "p50_ms": percentile(sorted(walls), 0.5),
        "cpu_us_per_host": cpu_us / (sizes.repeats * sizes.rollout_hosts),
        "results": dict(statuses),
        "runs": sizes.repeats,
    }


def measure_rollout(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N7 on ``sizes.rollout_hosts`` no-spawn agents labelled ``bench:roll``."""
    hosts = sizes.rollout_hosts
    fleets = start_fleet(stack, hosts, "roll-", "--label", TARGET)
    try:
        stack.wait_for_agents(hosts)
        controller = psutil.Process(stack.controller.pid)
        rollout = {"batch_size": sizes.rollout_batch}
        plain = _runs(stack, exec_body("/bin/true"), sizes, controller)
        rolled = _runs(stack, exec_body("/bin/true", rollout=rollout), sizes, controller)
    finally:
        stop_fleets(stack, fleets)
    return {"hosts": hosts, "batch_size": sizes.rollout_batch, "plain": plain, "rollout": rolled}


def measure_rollout_alone(sizes: Sizes) -> dict[str, Any]:
    """N7 on a stack of its own (nats-server, a controller, simulated agents)."""
    return on_own_stack(measure_rollout, sizes)


def main() -> int:
    return measure_main("python -m bench.rollout", measure_rollout)


if __name__ == "__main__":
    raise SystemExit(main())
