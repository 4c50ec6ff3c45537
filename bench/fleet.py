"""Simulated agents: many real :class:`agentd.Agent` objects in one process, sharing
a few NATS connections, each with its own subscriptions and registry entry, and
an executor that answers without spawning a process.

``python -m bench.fleet NATS_URL --count N --name sim --label bench:sim`` prints
``ready N`` once every agent is subscribed and registered.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import nats
from nats.aio.client import Client

from agentd.agent import Agent
from agentd.config import AgentConfig
from schemas.messages import ExecJob, ExecResult, ResultStatus


class NoSpawnExecutor:
    """Answers every job as completed at once, with ``stdout_bytes`` of output."""

    def __init__(self, hostname: str, stdout_bytes: int) -> None:
        self._hostname = hostname
        self._stdout = "x" * stdout_bytes

    async def run(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        return ExecResult(
            job_id=job.job_id,
            hostname=self._hostname,
            status=ResultStatus.COMPLETED,
            stdout=self._stdout,
            stdout_bytes=len(self._stdout),
            exit_code=0,
        )


async def serve(args: argparse.Namespace) -> None:
    clients: list[Client] = [
        await nats.connect(args.nats_url, pending_size=64 * 1024 * 1024)
        for _ in range(args.connections)
    ]
    labels = dict(label.split(":", 1) for label in args.label)
    agents: list[Agent] = []
    for index in range(args.count):
        hostname = f"{args.name}-{index:05d}"
        config = AgentConfig(
            nats_url=args.nats_url,
            hostname=hostname,
            labels=labels,
            heartbeat_interval_s=args.heartbeat_interval,
            output_cap_bytes=max(1024, args.stdout_bytes * 2),
        )
        executor = NoSpawnExecutor(hostname, args.stdout_bytes)
        agents.append(Agent(config, executor, connection=clients[index % len(clients)]))
    for start in range(0, len(agents), 200):
        await asyncio.gather(*(agent.start() for agent in agents[start : start + 200]))
    print(f"ready {len(agents)}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for start in range(0, len(agents), 500):
        await asyncio.gather(*(agent.stop() for agent in agents[start : start + 500]))
    for client in clients:
        await client.drain()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("nats_url")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--name", default="sim")
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--stdout-bytes", type=int, default=0)
    parser.add_argument("--heartbeat-interval", type=float, default=300.0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
