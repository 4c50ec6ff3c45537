"""``nexec``: the command line. One module per subcommand group; each adds its parsers
with :func:`argparse.ArgumentParser.set_defaults` ``func`` = the function that runs it.

nexec keys create|revoke|list ...   API keys (:mod:`nexec.cli.keys`)
nexec signing-key create|public ... job signing keys (:mod:`nexec.cli.signing_key`)
nexec nats-auth --out DIR ...       NATS users, permissions and TLS (:mod:`nexec.cli.nats_auth`)
nexec dev [--port 8080]             a local stack (:mod:`nexec.cli.dev`)
"""

from __future__ import annotations

import argparse
import sys

from controller.keys.store import KeysFileError, UnknownKeyName
from nexec.cli import dev, keys, nats_auth, signing_key
from nexec.dev.processes import ProcessFailed
from schemas import TargetSyntaxError

GROUPS = (keys, signing_key, nats_auth, dev)
"""Every subcommand group, in ``--help`` order."""

EXIT_UNKNOWN_NAME = 2
EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexec", description="nexec fleet command dispatcher")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit status: 0, 1 when it failed (the reason on stderr),
    2 for a key name that does not exist (argparse also exits 2 on bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except UnknownKeyName as exc:
        print(f"nexec: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN_NAME
    except (KeysFileError, ProcessFailed, TargetSyntaxError, ValueError, OSError) as exc:
        print(f"nexec: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return status
