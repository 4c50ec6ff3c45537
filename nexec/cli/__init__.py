"""``nexec``: the command line. One module per subcommand group; each adds its parsers
with :func:`argparse.ArgumentParser.set_defaults` ``func`` = the function that runs it.

nexec exec|shell|watch ...          run commands, follow jobs (:mod:`nexec.cli.run`)
nexec nodes|jobs|job|cancel|audit|fleet  the fleet and its jobs (:mod:`nexec.cli.fleet`)
nexec keys create|revoke|list ...   API keys (:mod:`nexec.cli.keys`)
nexec signing-key create|public ... job signing keys (:mod:`nexec.cli.signing_key`)
nexec nats-auth --out DIR ...       NATS users, permissions and TLS (:mod:`nexec.cli.nats_auth`)
nexec dev [--port 8080]             a local stack (:mod:`nexec.cli.dev`)

The client subcommands (run, fleet) talk to a controller through ``nexec.Client``, which
is imported (with aiohttp) only when one of them runs; the admin subcommands never load it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nexec.cli.exit_status import RULE

CLIENT_GROUPS = ("run", "fleet")
ADMIN_GROUPS = ("keys", "signing_key", "nats_auth", "dev")
"""Every subcommand group (a module of this package), in ``--help`` order."""
CLIENT_COMMANDS = frozenset(
    {"exec", "shell", "watch", "nodes", "jobs", "job", "cancel", "audit", "fleet"}
)
"""The subcommands of :data:`CLIENT_GROUPS`: for them the admin groups, whose modules
import cryptography and the dev stack, are not loaded (a test checks the list)."""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; for a client subcommand in ``argv``, of the client groups only."""
    words = [word for word in (sys.argv[1:] if argv is None else argv) if word[:1] != "-"]
    client_only = bool(words) and words[0] in CLIENT_COMMANDS
    groups = CLIENT_GROUPS if client_only else CLIENT_GROUPS + ADMIN_GROUPS
    parser = argparse.ArgumentParser(
        prog="nexec",
        description="nexec fleet command dispatcher",
        epilog=RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for group in groups:
        importlib.import_module(f"nexec.cli.{group}").add_parsers(commands)
    return parser


def split_command(words: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``nexec exec TARGET [options] -- COMMAND [ARG...]``: the words before the first
    ``--``, and the command after it, kept whole (argparse would drop a second ``--``,
    which belongs to the command: ``nexec exec web1 -- grep -- -v file``)."""
    words = list(words)
    if words[:1] != ["exec"] or "--" not in words:
        return words, None
    separator = words.index("--")
    return words[:separator], words[separator + 1 :]


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit status. The client subcommands follow the rule in
    :data:`nexec.cli.exit_status.RULE`; the admin subcommands exit 0, 1 when they failed
    (the reason on stderr), 2 for a key name that does not exist (:mod:`nexec.cli.admin`);
    argparse exits 2 on bad usage."""
    words, command = split_command(sys.argv[1:] if argv is None else argv)
    args = build_parser(words).parse_args(words)
    if command is not None:
        args.argv = [*args.argv, *command]
    if args.command in CLIENT_COMMANDS:
        status: int = args.func(args)
        return status
    admin: int = importlib.import_module("nexec.cli.admin").run(args)
    return admin
