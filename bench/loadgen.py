"""HTTP load from a separate process: ``python -m bench.loadgen URL ...`` prints one JSON line.

Sends ``--requests`` POSTs of the JSON ``--body`` (or GETs without one) at ``--concurrency``,
after ``--warmup`` unmeasured ones, and reports latency percentiles, requests
per second, HTTP statuses and, for exec answers, the tally of result statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from typing import Any

import aiohttp


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    body = args.body.encode() if args.body else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    headers.update(header.split(":", 1) for header in args.header)
    method = "POST" if body is not None else "GET"
    statuses: collections.Counter[int] = collections.Counter()
    results: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(measure: bool) -> None:
            started = time.perf_counter()
            async with session.request(method, args.url, data=body, headers=headers) as response:
                payload = await response.read()
            if not measure:
                return
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status] += 1
            if args.tally_results and response.status == 202:
                for result in json.loads(payload)["results"]:
                    results[result["status"]] += 1

        async def worker(count: int, measure: bool) -> None:
            for _ in range(count):
                await one(measure)

        async def phase(total: int, measure: bool) -> None:
            share, extra = divmod(total, args.concurrency)
            await asyncio.gather(
                *(worker(share + (i < extra), measure) for i in range(args.concurrency))
            )

        await phase(args.warmup, measure=False)
        started = time.perf_counter()
        await phase(args.requests, measure=True)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "elapsed_s": elapsed,
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
        "statuses": {str(code): count for code, count in statuses.items()},
        "results": dict(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("url")
    parser.add_argument("--body")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--tally-results", action="store_true")
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
