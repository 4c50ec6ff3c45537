"""The ``nexec`` command as a real process (``python -m nexec.cli``) against a real
controller, real agents and real NATS: exit statuses, output forms, live output, the key
kept out of the process list, the fleet and its jobs. (Terminals: test_cli_terminal.py;
the pure parts: test_cli_parts.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import msgspec
import psutil
from nats.aio.client import Client

from schemas.subjects import Subjects
from tests.cli_process import HOSTS, cli_env, finish, fleet, nexec, start_cli
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgentProcess,
    MakeAgent,
    MakeController,
    gated,
)

__all__ = ["fleet"]  # the fixture, imported for pytest

SUBJECTS = Subjects()


# --- exit status ------------------------------------------------------------------------


async def test_exit_status_zero_and_a_remote_exit_code(fleet: Controller, tmp_path: Path) -> None:
    ok = await nexec(fleet, tmp_path, "exec", "web1", "--", "echo", "hello")
    assert (ok.status, ok.stdout, ok.stderr) == (0, "hello\n", "")
    dashes = await nexec(fleet, tmp_path, "exec", "web1", "--", "echo", "--", "-n", "x")
    assert dashes.stdout == "-- -n x\n"  # the command's own "--" is kept
    three = await nexec(fleet, tmp_path, "shell", "web1", "echo out; echo err >&2; exit 3")
    assert (three.status, three.stdout, three.stderr) == (3, "out\n", "err\n")
    signalled = await nexec(fleet, tmp_path, "shell", "web1", "kill -9 $$")
    assert signalled.status == 128 + signal.SIGKILL


async def test_a_timeout_exits_124(fleet: Controller, tmp_path: Path) -> None:
    ran = await nexec(fleet, tmp_path, "exec", "web1", "--timeout", "1", "--", "sleep", "30")
    assert ran.status == 124
    assert ran.stderr.startswith("nexec: web1: timeout: ")


async def test_a_killed_agent_exits_255_no_reply(
    controller: Controller, live_agent_process: LiveAgentProcess, tmp_path: Path
) -> None:
    agent = await live_agent_process(controller, "doomed")
    await asyncio.to_thread(agent.stop, signum=signal.SIGKILL)
    ran = await nexec(
        controller, tmp_path, "exec", "doomed", "--delivery-timeout", "0.3", "--jsonl", "--", "true"
    )
    assert ran.status == 255, ran.stderr
    [line] = ran.stdout.splitlines()
    assert msgspec.json.decode(line)["status"] == "no_reply"


async def test_an_unknown_host_and_a_wrong_key_exit_255_with_the_error(
    fleet: Controller, tmp_path: Path
) -> None:
    unknown = await nexec(fleet, tmp_path, "exec", "web9", "--", "true")
    assert unknown.status == 255
    assert unknown.stderr == "nexec: 404 not found: no registered agent matches target 'web9'\n"
    wrong = await nexec(fleet, tmp_path, "exec", "web1", "--", "true", key="nxk_wrong")
    assert wrong.status == 255
    assert wrong.stderr.startswith("nexec: 401 unauthorized: ")
    assert "nxk_wrong" not in wrong.stderr + wrong.stdout


async def test_an_unreachable_controller_exits_255_and_usage_2(
    fleet: Controller, tmp_path: Path, unused_tcp_port: int
) -> None:
    env = cli_env(fleet, tmp_path) | {"NEXEC_URL": f"http://127.0.0.1:{unused_tcp_port}"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nexec.cli", "nodes",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    unreachable = await finish(process)
    assert unreachable.status == 255
    assert unreachable.stderr.startswith(f"nexec: GET http://127.0.0.1:{unused_tcp_port}/node: ")
    usage = await nexec(fleet, tmp_path, "exec", "web1")
    assert usage.status == 2
    both = await nexec(fleet, tmp_path, "exec", "web1", "--json", "--stream", "--", "true")
    assert both.status == 2


# --- output forms -----------------------------------------------------------------------


async def test_several_hosts_prefixed_aligned_and_summarised(
    fleet: Controller, tmp_path: Path
) -> None:
    ran = await nexec(
        fleet, tmp_path, "shell", "role:web", "echo out; echo err >&2; [ -d /nonexistent ]"
    )
    assert ran.status == 1
    assert sorted(ran.stdout.splitlines()) == ["web10: out", "web1:  out", "web2:  out"]
    err = ran.stderr.splitlines()
    assert sorted(err[:3]) == ["web10: err", "web1:  err", "web2:  err"]
    assert err[3:] == [
        "3 hosts: 3 completed",
        "  web1: exit 1",
        "  web10: exit 1",
        "  web2: exit 1",
    ]


async def test_grouped_output_shows_identical_hosts_once(fleet: Controller, tmp_path: Path) -> None:
    ran = await nexec(fleet, tmp_path, "exec", "role:web", "-b", "--", "echo", "same")
    assert ran.status == 0
    assert ran.stdout == "---------------\nweb[1-2,10] (3)\n---------------\nsame\n"
    assert ran.stderr == "3 hosts: 3 completed\n"


async def test_json_is_the_api_document(fleet: Controller, tmp_path: Path) -> None:
    ran = await nexec(
        fleet, tmp_path, "exec", "role:web", "--json", "--idempotency-key", "k1", "--", "echo", "x"
    )
    assert ran.status == 0
    document = msgspec.json.decode(ran.stdout)
    again = await fleet.request(
        "POST",
        "/node/role:web/command/exec",
        json={"command": "echo", "args": ["x"]},
        headers={"Idempotency-Key": "k1"},
    )
    assert document == again.body
    assert [r["hostname"] for r in document["results"]] == sorted(HOSTS)
    job = await nexec(fleet, tmp_path, "job", document["job_id"], "--json")
    assert (
        msgspec.json.decode(job.stdout)
        == (await fleet.request("GET", f"/job/{document['job_id']}")).body
    )


async def test_jsonl_gives_one_line_per_host(fleet: Controller, tmp_path: Path) -> None:
    ran = await nexec(fleet, tmp_path, "shell", "role:web", "--jsonl", "echo hi")
    lines = [msgspec.json.decode(line) for line in ran.stdout.splitlines()]
    assert sorted(line["hostname"] for line in lines) == sorted(HOSTS)
    assert {(line["type"], line["stdout"]) for line in lines} == {("nexec.exec.v1.result", "hi\n")}


async def test_stream_shows_a_line_before_the_command_ends(
    fleet: Controller, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    process = await start_cli(
        fleet,
        tmp_path,
        "shell",
        "web1",
        "--stream",
        f"echo first; {gated(gate)}; echo second",
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            first = await process.stdout.readline()
        assert first == b"first\n"
        assert process.returncode is None  # the command is still held at the gate
    finally:
        gate.rmdir()
        rest = await finish(process)
    assert (rest.status, rest.stdout) == (0, "second\n")


async def test_a_key_from_the_environment_is_not_in_the_process_list(
    fleet: Controller, tmp_path: Path, started: Fifo
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    process = await start_cli(
        fleet, tmp_path, "shell", "web1", f"echo go > {started.path}; {gated(gate)}"
    )
    try:
        await started.lines(1)
        assert process.returncode is None
        cli_line = " ".join(psutil.Process(process.pid).cmdline())
        assert "nexec.cli shell web1" in cli_line
        listed = [" ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])]
        assert not [line for line in listed if fleet.api_key in line]
    finally:
        gate.rmdir()
        assert (await finish(process)).status == 0


async def test_watch_follows_a_job_started_with_async(fleet: Controller, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    started = await nexec(
        fleet,
        tmp_path,
        "shell",
        "role:web",
        "--async",
        f"echo one; {gated(gate)}; echo two; exit 4",
    )
    assert started.status == 0
    job_id = started.stdout.strip()
    watcher = await start_cli(fleet, tmp_path, "watch", "--stream", job_id)
    try:
        assert watcher.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            seen = {await watcher.stdout.readline() for _ in HOSTS}
        assert seen == {b"web1:  one\n", b"web2:  one\n", b"web10: one\n"}
    finally:
        gate.rmdir()
        watched = await finish(watcher)
    assert watched.status == 4
    assert sorted(watched.stdout.splitlines()) == ["web10: two", "web1:  two", "web2:  two"]


async def test_a_key_without_job_read_waits_for_the_answer(
    make_controller: MakeController, make_agent: MakeAgent, tmp_path: Path
) -> None:
    controller = await make_controller(keys={"runner": (["command:shell"], [])})
    for host in ("web1", "web2"):
        await make_agent(host, labels={"role": "web"}, allow_shell=True)
    await controller.wait_for_agents("web1", "web2")
    ran = await nexec(
        controller, tmp_path, "shell", "role:web", "echo hi", key=controller.extra_keys["runner"]
    )
    assert ran.status == 0
    assert sorted(ran.stdout.splitlines()) == ["web1: hi", "web2: hi"]
    assert ran.stderr.count("job:read") == 1
    assert "answered" not in ran.stderr


# --- the fleet and its jobs ---------------------------------------------------------------


async def test_nodes_jobs_job_and_audit_as_tables_and_as_the_api_documents(
    fleet: Controller, tmp_path: Path
) -> None:
    nodes = await nexec(fleet, tmp_path, "nodes")
    header, *rows = nodes.stdout.splitlines()
    assert header.split() == ["HOSTNAME", "LABELS", "VERSION", "LAST", "SEEN", "JOBS", "LOAD"]
    assert [row.split()[:2] for row in rows] == [[h, "role:web"] for h in sorted(HOSTS)]
    as_json = await nexec(fleet, tmp_path, "nodes", "web1", "--json")
    assert msgspec.json.decode(as_json.stdout) == (await fleet.request("GET", "/node/web1")).body

    ran = await nexec(fleet, tmp_path, "exec", "role:web", "--json", "--", "echo", "listed")
    job_id = msgspec.json.decode(ran.stdout)["job_id"]
    jobs = await nexec(fleet, tmp_path, "jobs", "--limit", "1")
    job_id_, _date, _time, *rest = jobs.stdout.splitlines()[1].split()
    assert (job_id_, rest) == (job_id, ["role:web", "3", "admin", "echo", "listed"])
    page = await nexec(fleet, tmp_path, "jobs", "--limit", "1", "--json")
    assert msgspec.json.decode(page.stdout) == (await fleet.request("GET", "/job?limit=1")).body
    await nexec(fleet, tmp_path, "shell", "web1", "echo 'a b' | wc -w")
    shell_job = (await nexec(fleet, tmp_path, "jobs", "--limit", "1")).stdout.splitlines()[1]
    assert shell_job.endswith("admin   sh -c 'echo '\"'\"'a b'\"'\"' | wc -w'")

    job = await nexec(fleet, tmp_path, "job", job_id)
    assert job.status == 0
    assert sorted(job.stdout.splitlines()) == ["web10: listed", "web1:  listed", "web2:  listed"]
    assert job.stderr.startswith(f"nexec: job {job_id}: completed, role:web: echo listed")

    audit = await nexec(fleet, tmp_path, "audit", "--key-name", "admin", "--since", "1h")
    assert "POST    /node/role:web/command/exec  202     accepted" in audit.stdout
    records = await nexec(fleet, tmp_path, "audit", "--limit", "2", "--json")
    assert (
        msgspec.json.decode(records.stdout) == (await fleet.request("GET", "/audit?limit=2")).body
    )


async def test_jobs_and_job_show_a_commands_control_characters_escaped(
    fleet: Controller, tmp_path: Path
) -> None:
    """A job's command and arguments are any caller's text: ``nexec jobs`` and ``nexec
    job`` show a newline, a terminal escape or a bidi override as ``$'...'`` escapes (as
    bash reads them), so they cannot forge a row, erase one or recolour the terminal."""
    hostile = "a\nJOB-FORGED\x1b[1A\x1b[2K\u202e'"
    ran = await nexec(fleet, tmp_path, "exec", "web1", "--json", "--", "echo", hostile)
    job_id = msgspec.json.decode(ran.stdout)["job_id"]
    jobs = (await nexec(fleet, tmp_path, "jobs", "--limit", "1")).stdout
    said = (await nexec(fleet, tmp_path, "job", job_id)).stderr.splitlines()[0]

    shown = "echo $'a\\nJOB-FORGED\\x1b[1A\\x1b[2K\\u202e\\''"
    assert len(jobs.splitlines()) == 2 and "\x1b" not in jobs
    assert jobs.splitlines()[1].endswith(f"admin   {shown}")
    assert said.startswith(f"nexec: job {job_id}: completed, web1: {shown} (by admin, ")


async def test_nodes_shows_an_agents_control_characters_escaped(
    fleet: Controller, nc: Client, tmp_path: Path
) -> None:
    """An agent writes its own version: ``nexec nodes`` shows a newline or a terminal
    escape in it escaped, so a host cannot forge a row or clear the operator's screen."""
    now = time.time()
    entry = {
        "type": "nexec.agent.v1.heartbeat", "hostname": "evil", "instance_id": "i",
        "version": "1\x1b[2J\nFAKE", "started_at": now, "sent_at": now, "interval_s": 60.0,
    }  # fmt: skip
    await nc.jetstream().publish(SUBJECTS.registry_entry("evil"), json.dumps(entry).encode())
    await fleet.wait_for_agents("evil")
    listed = (await nexec(fleet, tmp_path, "nodes", "evil")).stdout

    assert "\x1b" not in listed and len(listed.splitlines()) == 2
    assert listed.splitlines()[1].split()[:3] == ["evil", "-", "1\\x1b[2J\\nFAKE"]


async def test_cancel_stops_a_running_job_and_watch_reports_it(
    fleet: Controller, tmp_path: Path, started: Fifo
) -> None:
    accepted = await nexec(
        fleet, tmp_path, "shell", "web1", "--async", f"echo go > {started.path}; sleep 30"
    )
    job_id = accepted.stdout.strip()
    await started.lines(1)
    cancelled = await nexec(fleet, tmp_path, "cancel", job_id)
    assert cancelled.status == 0
    assert cancelled.stdout.startswith(f"{job_id}: ")
    watched = await nexec(fleet, tmp_path, "watch", job_id)
    assert watched.status == 255
    assert watched.stderr.startswith("nexec: web1: cancelled")
    again = await nexec(fleet, tmp_path, "cancel", job_id)
    assert (again.status, again.stderr.split(":")[:2]) == (255, ["nexec", " 409 conflict"])


async def test_output_into_a_closed_pipe_ends_quietly(fleet: Controller, tmp_path: Path) -> None:
    pipeline = await asyncio.create_subprocess_exec(
        "sh", "-c",
        f"{sys.executable} -m nexec.cli shell role:web --stream 'seq 1 200000' | head -n 1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=cli_env(fleet, tmp_path),
    )  # fmt: skip
    ran = await finish(pipeline)
    assert ran.stderr == ""
    assert ran.stdout in {"web1:  1\n", "web2:  1\n", "web10: 1\n"}
