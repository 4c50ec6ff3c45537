"""``nexec-agentd``: the agent daemon's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import nats.errors

from agentd.agent import Agent
from agentd.config import AgentConfig
from agentd.run.orphans import RunningJobs
from agentd.run.policy import Policy, PolicyError
from runtime.daemon import daemon_parser, start_daemon
from runtime.settings import SettingsError

log = logging.getLogger("nexec.agentd")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = daemon_parser("nexec-agentd", "Run nexec jobs addressed to this host.", AgentConfig)
    return parser.parse_args(argv)


def install_child_watcher() -> None:
    """On Python 3.11 use the pidfd child watcher: faster spawning than the default."""
    if sys.version_info < (3, 12) and hasattr(asyncio, "PidfdChildWatcher"):
        try:
            asyncio.set_child_watcher(asyncio.PidfdChildWatcher())
        except OSError:  # kernels without pidfd_open keep the default watcher
            log.info("pidfd child watcher unavailable; using the default")


async def serve(config: AgentConfig) -> None:
    """Run the agent until SIGTERM or SIGINT, then drain and stop.

    A signal that comes while NATS is still unreachable stops the connection
    attempts at once.
    """
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_requested.set)
    agent = Agent(config)
    starting = asyncio.create_task(agent.start())
    stopping = asyncio.create_task(stop_requested.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await stopping
    finally:
        for task in (starting, stopping):
            task.cancel()
        # nats-py's retry loop can swallow a cancel: never wait for it unbounded.
        await asyncio.wait({starting, stopping}, timeout=config.connect_timeout_s)
        await agent.stop()


def main(argv: list[str] | None = None) -> int:
    try:
        config = start_daemon(AgentConfig, parse_args(argv))
    except SettingsError as exc:
        print(f"nexec-agentd: {exc}", file=sys.stderr)
        return 2
    try:
        Policy.from_config(config)
    except PolicyError as exc:
        print(f"nexec-agentd: {exc}", file=sys.stderr)
        return 2
    try:
        RunningJobs(config.state_dir, config.hostname)
    except OSError as exc:
        print(f"nexec-agentd: state_dir {str(config.state_dir)!r} unusable: {exc}", file=sys.stderr)
        return 2
    install_child_watcher()
    try:
        asyncio.run(serve(config))
    except (nats.errors.Error, TimeoutError) as exc:
        log.error("nexec-agentd failed: %s", exc or type(exc).__name__)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
