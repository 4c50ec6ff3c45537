"""Running a client subcommand: its connection, a ``nexec.Client``, its errors as exit
statuses. The client (and aiohttp) is imported here, when a client subcommand runs."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import nexec
from nexec.cli.connection import SettingsError, connection
from nexec.cli.exit_status import NEXEC_FAILED, USAGE
from nexec.cli.terminal import Terminal
from nexec.errors import APIError, NexecError

if TYPE_CHECKING:
    from nexec import Client, Retrying

Action = Callable[["Client", Terminal], Awaitable[int]]
INTERRUPTED = 128 + signal.SIGINT
"""Ctrl-C, as a shell reports SIGINT."""
BROKEN_PIPE = 128 + signal.SIGPIPE
"""stdout's reader went away, as a shell reports SIGPIPE."""


def run_client(args: argparse.Namespace, action: Action) -> int:
    """Run ``action`` with a client of the configured controller; its exit status, or
    255 for a refusal by the API or an unreachable controller (the error and its details
    on stderr), 2 for connection settings that cannot be read."""
    terminal = Terminal.system()
    try:
        settings = connection(args)
    except SettingsError as exc:
        terminal.say(str(exc))
        return USAGE

    def on_retry(retrying: Retrying) -> None:
        terminal.say(f"retrying in {retrying.delay_s:g} s after {retrying.error}")

    async def main() -> int:
        # nexec.Client imports aiohttp on first use: only client subcommands pay for it.
        async with nexec.Client(settings.url, settings.api_key, on_retry=on_retry) as client:
            return await action(client, terminal)

    try:
        return asyncio.run(main())
    except APIError as exc:
        terminal.end_progress()
        terminal.say(f"{exc.status} {exc.error}: {exc.details}")
    except NexecError as exc:
        terminal.end_progress()
        terminal.say(str(exc))  # names the method and URL
    except KeyboardInterrupt:
        terminal.end_progress()
        return INTERRUPTED
    except BrokenPipeError:  # `nexec ... | head`: the reader is gone; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    return NEXEC_FAILED
