"""``nexec exec``, ``nexec shell`` and ``nexec watch``: run a command on hosts, follow a job.

A job on one host (a hostname or ``_any``) is one request that waits for the answer,
unless ``--stream``. A job on several hosts (``_all``, a label selector) is submitted
with ``wait=false`` and followed on its live output, so each host's output appears as
its result arrives (or as produced, with ``--stream``), with a progress line on a
terminal. A key without ``job:read`` cannot follow: the command says so once and waits
for the exec answer instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from nexec.cli import joboutput
from nexec.cli.common import Subcommands
from nexec.cli.connection import add_arguments
from nexec.cli.exit_status import OK, RULE, USAGE
from nexec.cli.session import run_client
from nexec.cli.terminal import Terminal
from nexec.errors import Forbidden

if TYPE_CHECKING:
    from nexec import Client, CommandOptions
    from schemas.api import DryRunResponse, ExecResponse

Submit = Callable[["Client", "CommandOptions"], Awaitable["ExecResponse"]]
Plan = Callable[["Client", "CommandOptions"], Awaitable["DryRunResponse"]]


def add_parsers(commands: Subcommands) -> None:
    run = commands.add_parser(
        "exec",
        help="run a command (no shell) on hosts",
        usage="nexec exec TARGET [options] -- COMMAND [ARG...]",
        epilog=RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("target", help="a hostname, _any, _all or labels (role:web,env:prod)")
    run.add_argument("argv", nargs="*", metavar="COMMAND [ARG...]")
    _command_options(run)
    run.set_defaults(func=exec_command)
    shell = commands.add_parser(
        "shell",
        help="run a command line with /bin/sh -c on hosts",
        usage="nexec shell TARGET [options] 'COMMAND LINE'",
        epilog=RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    shell.add_argument("target", help="a hostname, _any, _all or labels (role:web,env:prod)")
    shell.add_argument("command_line", metavar="'COMMAND LINE'")
    _command_options(shell)
    shell.set_defaults(func=shell_command)
    watch = commands.add_parser(
        "watch",
        help="follow a running job's output until it ends",
        epilog=RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch.add_argument("job_id", metavar="ID")
    joboutput.add_output_options(watch, json=False)
    add_arguments(watch)
    watch.set_defaults(func=watch_command)


def _command_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=int, metavar="S", help="kill after S seconds (1-300)")
    parser.add_argument("--cwd", metavar="DIR", help="absolute working directory on the hosts")
    parser.add_argument(
        "--env",
        action="append",
        type=_variable,
        default=[],
        metavar="K=V",
        help="a variable for the command (repeatable)",
    )
    parser.add_argument(
        "--delivery-timeout", type=float, metavar="S", help="seconds a host has to take the job"
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--idempotency-key", metavar="K", help="run at most once for this key")
    keys.add_argument(
        "--no-idempotency-key",
        action="store_true",
        help="send none (then a 429 or 503 is not retried)",
    )
    _rollout_options(parser)
    parser.add_argument(
        "--async",
        dest="run_async",
        action="store_true",
        help="print the job id (the accepted document with --json) and return at once",
    )
    joboutput.add_output_options(parser, json=True)
    add_arguments(parser)


def _rollout_options(parser: argparse.ArgumentParser) -> None:
    rollout = parser.add_argument_group("rollout (docs/jobs.md, Rollouts)")
    rollout.add_argument(
        "--batch",
        type=_count(minimum=1),
        metavar="N|N%",
        help="run on at most N hosts (or N%% of them) at once, in hostname order",
    )
    rollout.add_argument(
        "--max-failures",
        type=_count(minimum=0),
        metavar="N|N%",
        help="with --batch: start no further host once more than N hosts failed (default 0)",
    )
    rollout.add_argument(
        "--pause", type=float, metavar="S", help="with --batch: S seconds between host starts"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the request and print the hosts it would run on; run nothing",
    )


def _count(*, minimum: int) -> Callable[[str], int | str]:
    """A ``--batch`` or ``--max-failures`` value: a whole number >= ``minimum`` or
    ``N%``, as the API takes it (the controller checks the percentage's range)."""

    def parse(text: str) -> int | str:
        number = text.removesuffix("%")
        if not number.isdigit() or (number == text and int(number) < minimum):
            raise argparse.ArgumentTypeError(f"expected N (>= {minimum}) or N%, got {text!r}")
        return text if number != text else int(number)

    return parse


def _variable(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return name, value


def command_options(args: argparse.Namespace) -> CommandOptions:
    """The request options the flags give."""
    options: CommandOptions = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.cwd is not None:
        options["cwd"] = args.cwd
    if args.env:
        options["env"] = dict(args.env)
    if args.delivery_timeout is not None:
        options["delivery_timeout"] = args.delivery_timeout
    if args.idempotency_key is not None:
        options["idempotency_key"] = args.idempotency_key
    elif args.no_idempotency_key:
        options["idempotency_key"] = False
    if args.batch is not None:
        rollout: dict[str, int | str | float] = {"batch_size": args.batch}
        if args.max_failures is not None:
            rollout["max_failures"] = args.max_failures
        if args.pause is not None:
            rollout["pause_s"] = args.pause
        options["rollout"] = rollout
    return options


def exec_command(args: argparse.Namespace) -> int:
    if not args.argv:
        print("nexec: exec needs a command: nexec exec TARGET -- COMMAND [ARG...]", file=sys.stderr)
        return USAGE
    command, *command_args = args.argv

    async def submit(client: Client, options: CommandOptions) -> ExecResponse:
        return await client.exec(args.target, command, command_args, **options)

    async def plan(client: Client, options: CommandOptions) -> DryRunResponse:
        return await client.exec(args.target, command, command_args, dry_run=True, **options)

    return _run(args, submit, plan)


def shell_command(args: argparse.Namespace) -> int:
    async def submit(client: Client, options: CommandOptions) -> ExecResponse:
        return await client.shell(args.target, args.command_line, **options)

    async def plan(client: Client, options: CommandOptions) -> DryRunResponse:
        return await client.shell(args.target, args.command_line, dry_run=True, **options)

    return _run(args, submit, plan)


def _run(args: argparse.Namespace, submit: Submit, plan: Plan) -> int:
    if not _usable(args):
        return USAGE

    async def run(client: Client, terminal: Terminal) -> int:
        if args.dry_run:
            hosts = await plan(client, command_options(args))
            if args.json:
                terminal.write(_json(hosts))
            else:
                terminal.write("".join(f"{host}\n" for host in hosts.hosts))
                terminal.say(_plan(hosts))
            return OK
        return await run_job(client, terminal, args, submit)

    return run_client(args, run)


async def run_job(
    client: Client, terminal: Terminal, args: argparse.Namespace, submit: Submit
) -> int:
    """Submit the job and show it as the flags ask; the exit status.

    Raises:
        NexecError: the API refused, or the controller could not be reached.
    """
    options = command_options(args)
    if args.run_async:
        accepted = await submit(client, {**options, "wait": False})
        terminal.write(_json(accepted) if args.json else f"{accepted.job_id}\n")
        return OK
    if args.json:
        response = await submit(client, options)
        terminal.write(_json(response))
        return joboutput.exit_status(response.results)
    several = joboutput.addresses_several(args.target)
    view = joboutput.make_view(terminal, args, several=several)
    if (several or args.stream) and await may_follow(client, terminal):
        accepted = await submit(client, {**options, "wait": False})
        return await joboutput.follow(client, terminal, accepted.job_id, view)
    response = await submit(client, options)
    return joboutput.show_results(view, response.results, live=False)


async def may_follow(client: Client, terminal: Terminal) -> bool:
    """Whether the key may read live output (``job:read``); if not, say so once.

    Raises:
        NexecError: another refusal, or the controller could not be reached.
    """
    try:
        await client.job_page(limit=1)
    except Forbidden:
        terminal.say("this key lacks job:read: waiting for the whole answer (no live output)")
        return False
    return True


def watch_command(args: argparse.Namespace) -> int:
    async def watch(client: Client, terminal: Terminal) -> int:
        job = await client.job(args.job_id)
        several = joboutput.addresses_several(job.target)
        view = joboutput.make_view(terminal, args, several=several)
        return await joboutput.follow(client, terminal, job.job_id, view, job=job)

    if not _usable(args):
        return USAGE
    return run_client(args, watch)


def _usable(args: argparse.Namespace) -> bool:
    """Whether the flags go together; if not, say why on stderr."""
    problem = joboutput.conflict(args) or _rollout_conflict(args)
    if problem is not None:
        print(f"nexec: {problem}", file=sys.stderr)
    return problem is None


def _rollout_conflict(args: argparse.Namespace) -> str | None:
    """What is wrong with the rollout and dry-run flags together, or None."""
    if getattr(args, "batch", None) is None and (
        getattr(args, "max_failures", None) is not None or getattr(args, "pause", None) is not None
    ):
        return "--max-failures and --pause go with --batch"
    if getattr(args, "dry_run", False) and (
        args.run_async or args.stream or args.jsonl or args.group
    ):
        return "--dry-run prints the hosts (with --json the API's document) only"
    return None


def _plan(plan: DryRunResponse) -> str:
    """The line under a dry run's hosts: how many, how many at once."""
    hosts = "host" if plan.count == 1 else "hosts"
    return f"dry run: {plan.count} {hosts}, {plan.batch_size} at once; nothing ran"


def _json(document: object) -> str:
    return msgspec.json.encode(document).decode() + "\n"
