"""``nexec``: key management and the local development stack.

nexec keys create --keys-file FILE --name NAME --perm PERM [--perm ...] [--target PATTERN ...]
                  [--expires DURATION]
nexec keys revoke --keys-file FILE --name NAME
nexec keys list --keys-file FILE
nexec signing-key create --out FILE
nexec signing-key public --key-file FILE
nexec nats-auth --out DIR [--agent HOST[,key:value...] ...]
nexec dev [--port 8080]
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

from controller.devstack import run_dev
from controller.keys import (
    PERMISSIONS,
    KeysFileError,
    UnknownKeyName,
    create_key,
    format_time,
    has_expired,
    parse_duration,
    read_keys_file,
    revoke_key,
)
from controller.natsauth import AgentSpec, write_nats_auth
from controller.processes import ProcessFailed
from schemas import Subjects, TargetSyntaxError
from schemas.signing import JobSigner, write_seed_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexec", description="nexec fleet command dispatcher")
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
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
    revoke = keys.add_parser(
        "revoke", help="remove a key; controllers refuse it once they reload the file"
    )
    revoke.add_argument("--keys-file", type=Path, required=True)
    revoke.add_argument("--name", required=True)
    listing = keys.add_parser("list", help="names, permissions, targets and expiry (never keys)")
    listing.add_argument("--keys-file", type=Path, required=True)

    auth = commands.add_parser(
        "nats-auth",
        help="write NATS users, permissions, TLS and job signing keys for controllers, "
        "publishers and agents",
    )
    auth.add_argument("--out", type=Path, required=True, help="a directory git ignores")
    auth.add_argument(
        "--agent", dest="agents", action="append", default=[], metavar="HOST[,key:value...]"
    )
    auth.add_argument("--subject-prefix", default="nexec")
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

    signing = commands.add_parser(
        "signing-key", help="job signing keys (nkeys): the controller's or a publisher's"
    ).add_subparsers(dest="signing_command", required=True)
    new_key = signing.add_parser("create", help="write a new seed (0600); print its public key")
    new_key.add_argument("--out", type=Path, required=True, help="seed file; never overwritten")
    public = signing.add_parser("public", help="print the public key of a seed file")
    public.add_argument("--key-file", type=Path, required=True)

    dev = commands.add_parser("dev", help="run nats-server, a controller and an agent locally")
    dev.add_argument("--port", type=int, default=8080, help="HTTP port (0 = any free port)")
    return parser


def duration(text: str) -> int:
    """``--expires``: seconds, or an argparse error saying what is expected."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def default_tls_hosts() -> list[str]:
    return ["localhost", "127.0.0.1", "::1", socket.gethostname()]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "dev":
            return run_dev(args.port)
        if args.command == "nats-auth":
            agents = [AgentSpec.parse(text) for text in args.agents]
            tls_hosts = args.tls_hosts or default_tls_hosts()
            subjects = Subjects(args.subject_prefix)
            written = write_nats_auth(args.out, subjects, agents, tls_hosts, replace=args.replace)
            for path in written:
                print(path)
            return 0
        if args.command == "signing-key":
            signer = (
                write_seed_file(args.out)
                if args.signing_command == "create"
                else JobSigner.from_file(args.key_file)
            )
            print(signer.public_key)
            return 0
        return keys_command(args)
    except UnknownKeyName as exc:
        print(f"nexec: {exc}", file=sys.stderr)
        return 2
    except (KeysFileError, ProcessFailed, TargetSyntaxError, ValueError, OSError) as exc:
        print(f"nexec: {exc}", file=sys.stderr)
        return 1


def keys_command(args: argparse.Namespace) -> int:
    """``nexec keys create|revoke|list``.

    Raises:
        UnknownKeyName: revoke names no key.
        KeysFileError: the keys file cannot be read, is invalid or cannot be written.
    """
    if args.keys_command == "create":
        expires_at = None if args.expires_in_s is None else time.time() + args.expires_in_s
        print(
            create_key(
                args.keys_file,
                name=args.name,
                permissions=args.permissions,
                targets=args.targets,
                expires_at=expires_at,
            )
        )
    elif args.keys_command == "revoke":
        revoke_key(args.keys_file, args.name)
    else:
        now = time.time()
        for entry in read_keys_file(args.keys_file).keys:
            fields = [entry.name, ",".join(entry.permissions), ",".join(entry.targets) or "*"]
            print("\t".join([*fields, expiry(entry.expires_at, now)]))
    return 0


def expiry(expires_at: float | None, now: float) -> str:
    if expires_at is None:
        return "never expires"
    verb = "expired" if has_expired(expires_at, now) else "expires"
    return f"{verb} {format_time(expires_at)}"


if __name__ == "__main__":
    raise SystemExit(main())
