"""``nexec signing-key create|public``: job signing keys (nkeys)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nexec.cli.common import Subcommands
from runtime.signing import JobSigner, write_seed_file


def add_parsers(commands: Subcommands) -> None:
    signing = commands.add_parser(
        "signing-key", help="job signing keys (nkeys): the controller's or a publisher's"
    ).add_subparsers(dest="signing_command", required=True)
    create = signing.add_parser("create", help="write a new seed (0600); print its public key")
    create.add_argument("--out", type=Path, required=True, help="seed file; never overwritten")
    create.set_defaults(func=create_command)
    public = signing.add_parser("public", help="print the public key of a seed file")
    public.add_argument("--key-file", type=Path, required=True)
    public.set_defaults(func=public_command)


def create_command(args: argparse.Namespace) -> int:
    """Raises: OSError: the seed file exists or cannot be written."""
    print(write_seed_file(args.out).public_key)
    return 0


def public_command(args: argparse.Namespace) -> int:
    """Raises: SigningKeyError (a ValueError): the file holds no user seed; OSError."""
    print(JobSigner.from_file(args.key_file).public_key)
    return 0
