"""``nexec keys create|revoke|list``: the API keys file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from controller.keys.store import (
    PERMISSIONS,
    create_key,
    format_time,
    has_expired,
    parse_duration,
    read_keys_file,
    revoke_key,
)
from nexec.cli.common import Subcommands


def add_parsers(commands: Subcommands) -> None:
    """``nexec keys`` and its subcommands ``create``, ``revoke`` and ``list``."""
    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
    add_create_parser(keys)
    revoke = keys.add_parser(
        "revoke", help="remove a key; controllers refuse it once they reload the file"
    )
    revoke.add_argument("--keys-file", type=Path, required=True)
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(func=revoke_command)
    listing = keys.add_parser(
        "list", help="names, permissions, targets, expiry and max_hosts (never keys)"
    )
    listing.add_argument("--keys-file", type=Path, required=True)
    listing.set_defaults(func=list_command)


def add_create_parser(keys: Subcommands) -> None:
    """``nexec keys create``: its name, permissions, targets, expiry and max_hosts."""
    create = keys.add_parser("create", help="add a key; prints it once on stdout")
    create.add_argument("--keys-file", type=Path, required=True)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--perm",
        dest="permissions",
        action="append",
        required=True,
        choices=sorted(PERMISSIONS),
        help="repeatable",
    )
    create.add_argument(
        "--target",
        dest="targets",
        action="append",
        default=[],
        metavar="PATTERN",
        help="glob the target must match, e.g. 'web*' or 'env:dev' (repeatable; none = any)",
    )
    create.add_argument(
        "--expires",
        dest="expires_in_s",
        type=duration,
        metavar="DURATION",
        help="refuse the key this long from now: 30d, 12h, 90m or 3600s (default: never)",
    )
    create.add_argument(
        "--max-hosts",
        type=int,
        metavar="N",
        help="at most N hosts run the key's commands at once, on every controller "
        "(default: no limit)",
    )
    create.set_defaults(func=create_command)


def duration(text: str) -> int:
    """``--expires``: seconds, or an argparse error saying what is expected."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def create_command(args: argparse.Namespace) -> int:
    """Raises: KeysFileError: the keys file cannot be read, is invalid or cannot be written."""
    expires_at = None if args.expires_in_s is None else time.time() + args.expires_in_s
    key = create_key(
        args.keys_file,
        name=args.name,
        permissions=args.permissions,
        targets=args.targets,
        expires_at=expires_at,
        max_hosts=args.max_hosts,
    )
    print(key)
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    """Raises: UnknownKeyName: no key has that name; KeysFileError: as for create."""
    revoke_key(args.keys_file, args.name)
    return 0


def list_command(args: argparse.Namespace) -> int:
    """Raises: KeysFileError: the keys file cannot be read or is invalid."""
    now = time.time()
    for entry in read_keys_file(args.keys_file).keys:
        fields = [entry.name, ",".join(entry.permissions), ",".join(entry.targets) or "*"]
        limit = [] if entry.max_hosts is None else [f"max_hosts {entry.max_hosts}"]
        print("\t".join([*fields, expiry(entry.expires_at, now), *limit]))
    return 0


def expiry(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return "never expires"
    verb = "expired" if has_expired(expires_at, now) else "expires"
    return f"{verb} {format_time(expires_at)}"
