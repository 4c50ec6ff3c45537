"""Running an admin subcommand (keys, signing-key, nats-auth, dev): its failures as exit
statuses. Imported only when one runs, so that the client subcommands do not load the
key store and the process helpers."""

from __future__ import annotations

import argparse
import sys

from controller.keys.store import KeysFileError, UnknownKeyName
from nexec.dev.processes import ProcessFailed
from schemas.targets import TargetSyntaxError

EXIT_UNKNOWN_NAME = 2
EXIT_FAILED = 1


def run(args: argparse.Namespace) -> int:
    """The subcommand's status: 0, 1 when it failed (the reason on stderr), 2 for a key
    name that does not exist."""
    try:
        status: int = args.func(args)
    except UnknownKeyName as exc:
        print(f"nexec: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN_NAME
    except (KeysFileError, ProcessFailed, TargetSyntaxError, ValueError, OSError) as exc:
        print(f"nexec: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return status
