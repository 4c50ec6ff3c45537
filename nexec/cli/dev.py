"""``nexec dev``: nats-server, a controller and an agent on this machine."""

from __future__ import annotations

import argparse

from nexec.cli.common import Subcommands
from nexec.dev.stack import run_dev


def add_parsers(commands: Subcommands) -> None:
    dev = commands.add_parser("dev", help="run nats-server, a controller and an agent locally")
    dev.add_argument("--port", type=int, default=8080, help="HTTP port (0 = any free port)")
    dev.set_defaults(func=dev_command)


def dev_command(args: argparse.Namespace) -> int:
    """Raises: ProcessFailed: a process did not start."""
    return run_dev(args.port)
