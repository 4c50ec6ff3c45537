"""``nexec nodes``, ``jobs``, ``job``, ``cancel``, ``audit`` and ``fleet``: tables, or with
``--json`` the API's document exactly."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import msgspec

from nexec.cli import joboutput
from nexec.cli.common import Subcommands
from nexec.cli.connection import add_arguments
from nexec.cli.exit_status import OK, RULE
from nexec.cli.render import command_line, rollout_line, visible
from nexec.cli.session import run_client
from nexec.cli.terminal import Terminal

if TYPE_CHECKING:
    from nexec import Client

DEFAULT_LIMIT = 20
_DURATION = re.compile(r"^(?P<count>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parsers(commands: Subcommands) -> None:
    """``nexec nodes``, ``jobs``, ``job``, ``cancel``, ``audit`` and ``fleet``."""
    nodes = commands.add_parser("nodes", help="live agents: labels, version, load")
    nodes.add_argument("target", nargs="?", help="a hostname, _all or labels (default: every one)")
    _json_and_connection(nodes)
    nodes.set_defaults(func=nodes_command)
    _add_job_parsers(commands)
    audit = commands.add_parser("audit", help="the audit trail, newest first")
    audit.add_argument("--key-name", metavar="NAME", help="only this key's requests")
    audit.add_argument(
        "--since", type=since_time, metavar="T", help="Unix time, ISO 8601, or an age: 90m, 2h, 1d"
    )
    audit.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N")
    _json_and_connection(audit, "--json: the first page of GET /audit as the API sends it")
    audit.set_defaults(func=audit_command)
    fleet = commands.add_parser("fleet", help="pause or resume the fleet, or show whether it is")
    fleet.add_argument(
        "action",
        choices=FLEET_ACTIONS,
        help="pause: every controller refuses exec and shell, rollouts start no host "
        "(fleet:admin); resume: undo it (fleet:admin); status: whether it is paused",
    )
    _json_and_connection(fleet, '--json: the API\'s answer ({"paused": ...})')
    fleet.set_defaults(func=fleet_command)


def _add_job_parsers(commands: Subcommands) -> None:
    """``nexec jobs``, ``job`` and ``cancel``."""
    jobs = commands.add_parser("jobs", help="recent jobs, newest first")
    jobs.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N")
    _json_and_connection(jobs, "the first page of GET /job?limit=N as the API sends it")
    jobs.set_defaults(func=jobs_command)
    job = commands.add_parser(
        "job",
        help="a job with every host's result",
        epilog=RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    job.add_argument("job_id", metavar="ID")
    job.add_argument("-b", "--group", action="store_true", help="group identical hosts")
    _json_and_connection(job)
    job.set_defaults(func=job_command)
    cancel = commands.add_parser(
        "cancel", help="stop a running job on every host (--all: every running job)"
    )
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("job_id", metavar="ID", nargs="?")
    which.add_argument(
        "--all", action="store_true", help="every running job and rollout (fleet:admin)"
    )
    _json_and_connection(cancel)
    cancel.set_defaults(func=cancel_command)


def _json_and_connection(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--json", action="store_true", help=help or "the API's document")
    add_arguments(parser)


def since_time(text: str, now: float | None = None) -> float:
    """``--since``: Unix seconds, an ISO 8601 time (UTC unless it says), or an age.

    Raises:
        argparse.ArgumentTypeError: none of these.
    """
    match = _DURATION.match(text)
    if match:
        return (now or time.time()) - float(match["count"]) * _UNIT_S[match["unit"]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected Unix seconds, an ISO 8601 time or an age (90m, 2h, 1d), got {text!r}"
        ) from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned on the widest cell, two spaces apart; the last one not padded.
    A cell's control characters are shown escaped (:func:`visible`)."""
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in [headers, *rows]
    )


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(timestamp: float, now: float) -> str:
    seconds = max(0.0, now - timestamp)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def _json(document: object) -> str:
    return msgspec.json.encode(document).decode() + "\n"


def nodes_command(args: argparse.Namespace) -> int:
    async def nodes(client: Client, terminal: Terminal) -> int:
        listing = await (client.node(args.target) if args.target else client.nodes())
        if args.json:
            terminal.write(_json(listing))
            return OK
        now = time.time()
        rows = [
            [
                node.hostname,
                ",".join(f"{k}:{v}" for k, v in sorted(node.labels.items())) or "-",
                node.version,
                ago(node.last_seen, now),
                str(node.jobs_running),
                " ".join(f"{load:.2f}" for load in node.load_avg) or "-",
            ]
            for node in listing.nodes
        ]
        headers = ["HOSTNAME", "LABELS", "VERSION", "LAST SEEN", "JOBS", "LOAD"]
        terminal.write(table(headers, rows))
        return OK

    return run_client(args, nodes)


def jobs_command(args: argparse.Namespace) -> int:
    async def jobs(client: Client, terminal: Terminal) -> int:
        if args.json:
            terminal.write(_json(await client.job_page(limit=args.limit)))
            return OK
        rows = []
        async for summary in client.jobs(page_size=args.limit):
            hosts = "-" if summary.expected_hosts is None else str(summary.expected_hosts)
            command = command_line(summary.command, summary.args, shell=summary.shell)
            rows.append(
                [summary.job_id, when(summary.created_at), summary.target, hosts,
                 summary.caller, command]
            )  # fmt: skip
            if len(rows) >= args.limit:
                break  # the generator is closed when the loop ends
        terminal.write(
            table(["JOB", "CREATED (UTC)", "TARGET", "HOSTS", "CALLER", "COMMAND"], rows)
        )
        return OK

    return run_client(args, jobs)


def job_command(args: argparse.Namespace) -> int:
    async def job(client: Client, terminal: Terminal) -> int:
        view = await client.job(args.job_id)
        if args.json:
            terminal.write(_json(view))
            return joboutput.exit_status(view.results)
        command = command_line(view.command, view.args, shell=view.shell)
        terminal.say(
            f"job {view.job_id}: {view.state}, {view.target}: {command} "
            f"(by {view.caller}, {when(view.created_at)} UTC)"
        )
        several = joboutput.addresses_several(view.target)
        human = joboutput.make_view(terminal, _human(args), several=several)
        status = joboutput.show_results(human, view.results, live=False)
        if view.rollout is not None:
            terminal.say(rollout_line(view.rollout))
        return status

    return run_client(args, job)


def _human(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(jsonl=False, stream=False, group=args.group)


def cancel_command(args: argparse.Namespace) -> int:
    async def cancel(client: Client, terminal: Terminal) -> int:
        if args.all:
            return await _cancel_all(client, terminal, json=args.json)
        view = await client.cancel(args.job_id)
        terminal.write(_json(view) if args.json else f"{view.job_id}: {view.state}\n")
        return OK

    return run_client(args, cancel)


def audit_command(args: argparse.Namespace) -> int:
    async def audit(client: Client, terminal: Terminal) -> int:
        if args.json:
            page = await client.audit_page(
                limit=args.limit, key_name=args.key_name, since=args.since
            )
            terminal.write(_json(page))
            return OK
        rows = []
        records = client.audit(key_name=args.key_name, since=args.since, page_size=args.limit)
        async for record in records:
            rows.append(
                [when(record.time), record.key_name or "-", record.source, record.method,
                 record.path, str(record.status), record.outcome]
            )  # fmt: skip
            if len(rows) >= args.limit:
                break
        headers = ["TIME (UTC)", "KEY", "SOURCE", "METHOD", "PATH", "STATUS", "OUTCOME"]
        terminal.write(table(headers, rows))
        return OK

    return run_client(args, audit)


async def _cancel_all(client: Client, terminal: Terminal, *, json: bool) -> int:
    """``nexec cancel --all``: the ids of the jobs a cancel was sent for, one a line; a
    note on stderr when the controller stopped at its bound (run it again)."""
    answer = await client.cancel_all()
    if json:
        terminal.write(_json(answer))
        return OK
    terminal.write("".join(f"{job_id}\n" for job_id in answer.job_ids))
    count = len(answer.job_ids)
    terminal.say(f"cancel sent for {count} running job{'' if count == 1 else 's'}")
    if not answer.complete:
        terminal.say("older jobs were not reached: run `nexec cancel --all` again")
    return OK


FLEET_ACTIONS = ("pause", "resume", "status")


def fleet_command(args: argparse.Namespace) -> int:
    async def fleet(client: Client, terminal: Terminal) -> int:
        if args.action == "pause":
            state = await client.pause()
        elif args.action == "resume":
            state = await client.resume()
        else:
            state = await client.fleet()
        if args.json:
            terminal.write(_json(state))
        elif state.paused is None:
            terminal.write("running\n")
        else:
            terminal.write(f"paused by {state.paused.by} since {when(state.paused.since)} UTC\n")
        return OK

    return run_client(args, fleet)
