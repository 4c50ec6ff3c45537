"""What the floors and the nexec measures share: sizes, child processes, load runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from nexec.dev.processes import ManagedProcess

READY_RE = re.compile(r"^ready (?P<value>\d+)")
STARTUP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Sizes:
    spawn_runs_c1: int
    spawn_runs_c32: int
    http_requests_c1: int
    http_requests_c32: int
    fanout_counts: list[int]
    repeats: int
    fleet_counts: list[int]
    controller_jobs: int
    controller_jobs_checkpoint: int
    output_hosts: int
    output_host_bytes: int
    big_output_bytes: int = 1_000_000
    cli_runs: int = 20
    """N6: runs of each whole process (``nexec exec``, ``python -c``, curl)."""
    rollout_hosts: int = 100
    """N7: the simulated hosts a rollout runs on."""
    rollout_batch: int = 10
    """N7: its ``batch_size``."""
    metrics_runs: int = 9
    """N8: runs with metrics on, and as many with them off, taking turns."""
    metrics_requests: int = 5000
    """N8: requests per run (the CPU clock ticks every 10 ms: enough for 1/500 of a run)."""
    console_hosts: int = 1000
    """N9: the simulated hosts of the job the web console draws."""
    is_quick: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def full(cls) -> Sizes:
        return cls(
            spawn_runs_c1=300,
            spawn_runs_c32=2000,
            http_requests_c1=300,
            http_requests_c32=3000,
            fanout_counts=[100, 1000, 5000],
            repeats=10,
            fleet_counts=[100, 1000, 5000, 10000],
            controller_jobs=20000,
            controller_jobs_checkpoint=2000,
            output_hosts=100,
            output_host_bytes=64 * 1024,
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            spawn_runs_c1=10,
            spawn_runs_c32=10,
            http_requests_c1=10,
            http_requests_c32=10,
            fanout_counts=[10],
            repeats=3,
            fleet_counts=[10],
            controller_jobs=100,
            controller_jobs_checkpoint=10,
            output_hosts=10,
            output_host_bytes=64 * 1024,
            cli_runs=3,
            rollout_hosts=10,
            rollout_batch=2,
            metrics_runs=2,
            metrics_requests=10,
            console_hosts=10,
            is_quick=True,
        )


def start_child(argv: Sequence[str], name: str) -> tuple[ManagedProcess, int]:
    """Start a helper that prints ``ready N``; return it and N.

    Raises:
        ProcessFailed: it exited or did not get ready in time.
    """
    process = ManagedProcess([sys.executable, "-m", *argv], name=name)
    try:
        match = process.wait_for_line(READY_RE, STARTUP_TIMEOUT_S)
    except Exception:
        process.stop()
        raise
    return process, int(match["value"])


def run_load(
    url: str,
    *,
    concurrency: int,
    requests: int,
    body: str | None = None,
    headers: Sequence[str] = (),
    warmup: int = 10,
    tally_results: bool = False,
) -> dict[str, Any]:
    """Run :mod:`bench.loadgen` in its own process and return its report."""
    argv = [sys.executable, "-m", "bench.loadgen", url, "--concurrency", str(concurrency),
            "--requests", str(requests), "--warmup", str(warmup)]  # fmt: skip
    if body is not None:
        argv += ["--body", body]
    for header in headers:
        argv += ["--header", header]
    if tally_results:
        argv.append("--tally-results")
    completed = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=1800)
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
