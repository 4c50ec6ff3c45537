"""``nexec nats-auth``: NATS users, permissions, TLS and job signing keys."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from nexec.cli.common import Subcommands
from nexec.provision.natsauth import AgentSpec, write_nats_auth
from schemas.subjects import DEFAULT_PREFIX, Subjects


def add_parsers(commands: Subcommands) -> None:
    auth = commands.add_parser(
        "nats-auth",
        help="write NATS users, permissions, TLS and job signing keys for controllers, "
        "publishers and agents",
    )
    auth.add_argument("--out", type=Path, required=True, help="a directory git ignores")
    auth.add_argument(
        "--agent", dest="agents", action="append", default=[], metavar="HOST[,key:value...]"
    )
    auth.add_argument("--subject-prefix", default=DEFAULT_PREFIX)
    auth.add_argument(
        "--replace",
        action="store_true",
        help="replace earlier output in --out: every secret, CA and key is new",
    )
    auth.add_argument(
        "--tls-host",
        dest="tls_hosts",
        action="append",
        metavar="NAME_OR_IP",
        help="a name or address of the NATS servers for their certificate (repeatable; "
        "default: localhost, 127.0.0.1, ::1 and this machine's hostname)",
    )
    auth.set_defaults(func=nats_auth_command)


def default_tls_hosts() -> list[str]:
    return ["localhost", "127.0.0.1", "::1", socket.gethostname()]


def nats_auth_command(args: argparse.Namespace) -> int:
    """Print every file written.

    Raises:
        TargetSyntaxError, ValueError: an ``--agent`` or the prefix is invalid, or
            ``--out`` holds earlier output and ``--replace`` was not given.
        OSError: a file cannot be written.
    """
    agents = [AgentSpec.parse(text) for text in args.agents]
    tls_hosts = args.tls_hosts or default_tls_hosts()
    subjects = Subjects(args.subject_prefix)
    for path in write_nats_auth(args.out, subjects, agents, tls_hosts, replace=args.replace):
        print(path)
    return 0
