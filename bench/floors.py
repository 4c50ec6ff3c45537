"""The floors: the same libraries doing the same work with no nexec in between.

F1 spawn: ``create_subprocess_exec("/bin/true")`` with both pipes read.
F2 round trip: HTTP -> aiohttp handler -> one nats-py request -> responder -> HTTP.
F3 fan-out: one publish to N subscribers over a few connections, until all N replied.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import nats

from agentd.main import install_child_watcher
from bench.common import Sizes, run_load, start_child
from bench.fanout import SUBJECT as FANOUT_SUBJECT
from bench.loadgen import percentile
from nexec.dev.processes import start_nats_server


async def _spawn_once() -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "/bin/true",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await process.communicate()
    return (time.perf_counter() - started) * 1000


async def _spawn(runs: int, concurrency: int) -> dict[str, float]:
    slots = asyncio.Semaphore(concurrency)

    async def one() -> float:
        async with slots:
            return await _spawn_once()

    started = time.perf_counter()
    latencies = sorted(await asyncio.gather(*(one() for _ in range(runs))))
    elapsed = time.perf_counter() - started
    return {"p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "runs_per_s": runs / elapsed}  # fmt: skip


def measure_spawn(sizes: Sizes) -> dict[str, Any]:
    install_child_watcher()

    async def both() -> dict[str, Any]:
        await _spawn(5, 1)  # warm up
        return {"c1": await _spawn(sizes.spawn_runs_c1, 1),
                "c32": await _spawn(sizes.spawn_runs_c32, 32)}  # fmt: skip

    return asyncio.run(both())


def measure_round_trip(sizes: Sizes, nats_url: str) -> dict[str, Any]:
    server, port = start_child(["bench.floor_server", nats_url], "floor-server")
    try:
        url = f"http://127.0.0.1:{port}/echo"
        return {
            "c1": run_load(url, concurrency=1, requests=sizes.http_requests_c1, body="{}"),
            "c32": run_load(url, concurrency=32, requests=sizes.http_requests_c32, body="{}"),
        }
    finally:
        server.stop()


async def _fanout_once(nats_url: str, count: int) -> float:
    client = await nats.connect(nats_url)
    try:
        inbox = client.new_inbox()
        received = 0
        all_in = asyncio.Event()

        async def on_reply(_: Any) -> None:
            nonlocal received
            received += 1
            if received == count:
                all_in.set()

        await client.subscribe(inbox, cb=on_reply)
        await client.flush()
        started = time.perf_counter()
        await client.publish(FANOUT_SUBJECT, b"{}", reply=inbox)
        await asyncio.wait_for(all_in.wait(), 120)
        return (time.perf_counter() - started) * 1000
    finally:
        await client.close()


def measure_fanout(sizes: Sizes, nats_url: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in sizes.fanout_counts:
        responders, _ = start_child(
            ["bench.fanout", nats_url, "--count", str(count)], f"fanout-{count}"
        )
        try:
            times = [asyncio.run(_fanout_once(nats_url, count)) for _ in range(sizes.repeats)]
        finally:
            responders.stop()
        results[str(count)] = {"p50_ms": statistics.median(times)}
    return results


def measure_floors(sizes: Sizes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nexec-bench-") as tmp:
        server, nats_url = start_nats_server(Path(tmp) / "nats")
        try:
            return {
                "F1_spawn": measure_spawn(sizes),
                "F2_round_trip": measure_round_trip(sizes, nats_url),
                "F3_fanout": measure_fanout(sizes, nats_url),
            }
        finally:
            server.stop()
