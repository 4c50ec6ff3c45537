"""A job's results and live output, shown by ``exec``, ``shell``, ``watch`` and ``job``:
the output flags, the choice of view, and following ``GET /job/{id}/output``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexec.cli.exit_status import exit_status
from nexec.cli.render import Human, JsonLines, View, rollout_line
from nexec.cli.terminal import Terminal
from nexec.errors import NexecError

if TYPE_CHECKING:
    from nexec import Client
    from schemas.api import JobView
    from schemas.messages import ExecResult

PROGRESS_REFRESH_S = 0.5
"""How often the progress line's elapsed time is redrawn."""

__all__ = [
    "add_output_options",
    "addresses_several",
    "conflict",
    "exit_status",
    "follow",
    "make_view",
    "show_results",
]


def add_output_options(parser: argparse.ArgumentParser, *, json: bool) -> None:
    forms = parser.add_mutually_exclusive_group()
    if json:
        forms.add_argument("--json", action="store_true", help="the API's response document")
    forms.add_argument(
        "--jsonl", action="store_true", help="one JSON object per host result as it arrives"
    )
    forms.add_argument(
        "-b",
        "--group",
        action="store_true",
        help="hosts with identical output and exit code shown once, under web[1-3,7]",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="output lines as the hosts produce them (with --jsonl: one object per chunk)",
    )
    parser.set_defaults(json=False)


def addresses_several(target: str) -> bool:
    """Whether a target may address several hosts (``_all`` or a label selector); its
    output is then prefixed, whatever number of hosts answers, so that scripts reading
    it see one form."""
    return target == "_all" or ":" in target


def conflict(args: argparse.Namespace) -> str | None:
    """What is wrong with the output flags together (a usage error), or None."""
    if args.stream and (args.group or args.json):
        return "--stream goes with the human form or --jsonl, not with -b or --json"
    if getattr(args, "run_async", False) and (args.stream or args.group or args.jsonl):
        return "--async prints the job id (or with --json the accepted document) only"
    return None


def make_view(terminal: Terminal, args: argparse.Namespace, *, several: bool) -> View:
    """The view the flags ask for."""
    if args.jsonl:
        return JsonLines(terminal, stream=args.stream)
    return Human(terminal, prefixed=several, stream=args.stream, grouped=args.group)


def show_results(view: View, results: Sequence[ExecResult], *, live: bool) -> int:
    """Show results already known (the exec answer, a job's record); the exit status."""
    view.expect([result.hostname for result in results], live=live)
    for result in results:
        view.result(result)
    return view.finish(results)


async def follow(
    client: Client, terminal: Terminal, job_id: str, view: View, *, job: JobView | None = None
) -> int:
    """Follow the job's live output until its end, showing each event; the exit status.

    Raises:
        NexecError: the API refused, or the controller could not be reached.
    """
    job = job or await client.job(job_id)
    view.expect(job.expected_hosts or [], live=True)
    results: dict[str, ExecResult] = {}
    ticker = asyncio.create_task(_tick(terminal, client if job.rollout else None, job_id))
    try:
        async for event in client.output(job_id):
            if event.kind == "output":
                view.chunk(event.data)
            elif event.kind == "result" and event.data.hostname not in results:
                results[event.data.hostname] = event.data
                view.result(event.data)
    finally:
        ticker.cancel()
    status = view.finish(sorted(results.values(), key=lambda result: result.hostname))
    if job.rollout is not None:  # how far it got, and why it stopped
        ended = (await client.job(job_id)).rollout
        terminal.say(rollout_line(ended or job.rollout))
    return status


async def _tick(terminal: Terminal, rollout_of: Client | None, job_id: str) -> None:
    """Redraw the progress line; for a rollout (``rollout_of`` given), with its
    progress read from ``GET /job/{id}`` at each redraw."""
    while True:
        await asyncio.sleep(PROGRESS_REFRESH_S)
        if terminal.progress is None:
            continue
        if rollout_of is not None:
            try:
                rollout = (await rollout_of.job(job_id)).rollout
            except NexecError:  # a line not redrawn; the output stream says what failed
                rollout = None
            if rollout is not None and terminal.progress is not None:
                terminal.progress.detail = rollout_line(rollout).partition(": ")[2]
        if terminal.progress is not None:
            terminal.progress.draw()
