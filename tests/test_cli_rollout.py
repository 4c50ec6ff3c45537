"""The ``nexec`` command's rollouts, dry runs and incident controls, as a real process
against a real controller, real agents and real NATS: ``--batch``/``--max-failures``
(skipped hosts named, exit 255), ``--dry-run`` (nothing runs), ``nexec fleet
pause|resume|status`` and ``nexec cancel --all``. Each run of a command appends its host
to a file, and the tests count those lines, never time."""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

import msgspec
import pytest

from tests.cli_process import cli_env, nexec
from tests.helpers import STARTUP_TIMEOUT_S, Controller, Fifo, MakeAgent, gated, ran_on, shell_fleet
from tests.test_rollout import until_view

HOSTS = ("web1", "web2", "web10")
"""In hostname order a rollout starts web1, web10, web2."""


@pytest.fixture
async def fleet(controller: Controller, make_agent: MakeAgent) -> Controller:
    """Agents web1, web2, web10 (label role:web, shell allowed), each with its name in
    ``$NEXEC_HOST``."""
    await shell_fleet(controller, make_agent, HOSTS)
    return controller


async def test_a_rollout_stops_at_the_second_host_and_names_the_skipped_one(
    fleet: Controller, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    line = f'echo "$NEXEC_HOST" >> {log}; [ "$NEXEC_HOST" != web10 ]'
    args = ("shell", "role:web", "--batch", "1", "--max-failures", "0", line)
    ran = await nexec(fleet, tmp_path, *args)
    assert ran.status == 255, ran.stderr
    assert ran_on(log) == ["web1", "web10"]  # web2 never ran
    err = ran.stderr.splitlines()
    assert "3 hosts: 2 completed, 1 skipped" in err
    assert "  web10: exit 1" in err
    [skipped] = [line for line in err if line.startswith("  web2: skipped: ")]
    assert "rollout stopped" in skipped
    [progress] = [line for line in err if line.startswith("nexec: rollout (batch 1")]
    assert "2 started, 2 finished, 1 failed, 1 skipped, 0 pending; stopped: " in progress


async def test_watch_shows_how_far_a_rollout_got(fleet: Controller, tmp_path: Path) -> None:
    """web10 holds its place in the window until web1's failure has stopped the
    rollout (else web10 finishing first would start web2)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    line = f'[ "$NEXEC_HOST" != web1 ] && {gated(gate)}'
    args = ("shell", "role:web", "--batch", "2", "--async", line)
    accepted = await nexec(fleet, tmp_path, *args)
    job_id = accepted.stdout.strip()
    await until_view(fleet, job_id, lambda view: view["rollout"]["stopped"] is not None)
    gate.rmdir()
    watched = await nexec(fleet, tmp_path, "watch", job_id)
    assert watched.status == 255, watched.stderr
    err = watched.stderr.splitlines()
    assert "  web1: exit 1" in err
    [progress] = [line for line in err if line.startswith("nexec: rollout (batch 2")]
    assert ", 1 failed, " in progress
    assert "; stopped: " in progress
    job = await nexec(fleet, tmp_path, "job", accepted.stdout.strip())
    assert job.status == 255
    assert job.stderr.splitlines()[-1] == progress


async def test_a_rollout_in_json_and_a_percentage_batch(fleet: Controller, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    line = f'echo "$NEXEC_HOST" >> {log}; [ "$NEXEC_HOST" != web1 ]'
    args = ("shell", "role:web", "--batch", "34%", "--max-failures", "1", "--json", line)
    ran = await nexec(fleet, tmp_path, *args)
    assert ran.status == 1, ran.stderr  # web1 exit 1 is within the budget; the rest ran
    document = msgspec.json.decode(ran.stdout)
    assert [r["status"] for r in document["results"]] == ["completed"] * 3
    assert sorted(ran_on(log)) == sorted(HOSTS)


async def test_dry_run_prints_the_hosts_and_runs_nothing(fleet: Controller, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    line = f"echo ran >> {log}"
    plain = await nexec(fleet, tmp_path, "shell", "role:web", "--dry-run", line)
    assert (plain.status, plain.stdout) == (0, "web1\nweb10\nweb2\n"), plain.stderr
    assert plain.stderr == "nexec: dry run: 3 hosts, 3 at once; nothing ran\n"
    batched = await nexec(
        fleet, tmp_path, "exec", "role:web", "--batch", "50%", "--dry-run", "--json", "--", "true"
    )
    assert msgspec.json.decode(batched.stdout) == {
        "hosts": ["web1", "web10", "web2"],
        "count": 3,
        "batch_size": 2,
    }
    assert not log.exists()
    usage = await nexec(fleet, tmp_path, "shell", "role:web", "--dry-run", "--async", line)
    lonely = await nexec(fleet, tmp_path, "shell", "role:web", "--max-failures", "1", line)
    assert (usage.status, lonely.status) == (2, 2)
    assert "--max-failures and --pause go with --batch" in lonely.stderr
    assert not log.exists()


async def test_fleet_pause_status_and_resume(fleet: Controller, tmp_path: Path) -> None:
    running = await nexec(fleet, tmp_path, "fleet", "status")
    assert (running.status, running.stdout) == (0, "running\n")
    paused = await nexec(fleet, tmp_path, "fleet", "pause")
    assert paused.status == 0
    assert paused.stdout.startswith("paused by admin since ")
    refused = await nexec(fleet, tmp_path, "exec", "web1", "--", "true")
    assert refused.status == 255
    assert refused.stderr.startswith("nexec: 503 fleet paused: the fleet is paused by admin")
    status = await nexec(fleet, tmp_path, "fleet", "status", "--json")
    assert msgspec.json.decode(status.stdout)["paused"]["by"] == "admin"
    resumed = await nexec(fleet, tmp_path, "fleet", "resume")
    assert (resumed.status, resumed.stdout) == (0, "running\n")
    again = await nexec(fleet, tmp_path, "exec", "web1", "--", "true")
    assert again.status == 0, again.stderr


async def test_cancel_all_stops_a_running_job(
    fleet: Controller, tmp_path: Path, started: Fifo
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    accepted = await nexec(
        fleet, tmp_path, "shell", "web1", "--async", f"echo go > {started.path}; {gated(gate)}"
    )
    job_id = accepted.stdout.strip()
    await started.lines(1)
    cancelled = await nexec(fleet, tmp_path, "cancel", "--all")
    assert cancelled.status == 0, cancelled.stderr
    assert cancelled.stdout == f"{job_id}\n"
    assert cancelled.stderr == "nexec: cancel sent for 1 running job\n"
    watched = await nexec(fleet, tmp_path, "watch", job_id)
    assert watched.status == 255
    assert watched.stderr.startswith("nexec: web1: cancelled")
    neither = await nexec(fleet, tmp_path, "cancel")
    assert neither.status == 2


async def test_the_progress_line_on_a_terminal_shows_the_rollout(
    fleet: Controller, tmp_path: Path
) -> None:
    """The CLI runs on a pseudo-terminal; the first host waits for a gate, which the test
    opens once the progress line shows the rollout (no timing: it waits for the text)."""
    gate = tmp_path / "gate"
    gate.mkdir()
    master, slave = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nexec.cli", "shell", "role:web", "--batch", "1", gated(gate),
        stdin=asyncio.subprocess.DEVNULL, stdout=slave, stderr=slave,
        env=cli_env(fleet, tmp_path),
    )  # fmt: skip
    os.close(slave)
    seen = bytearray()
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def readable() -> None:
        try:
            seen.extend(os.read(master, 65536) or b"")
        except OSError:  # EIO: every writer is gone
            loop.remove_reader(master)
        changed.set()

    loop.add_reader(master, readable)
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            while b"1 started, 0 finished, 0 failed, 0 skipped, 2 pending" not in seen:
                changed.clear()
                await changed.wait()
            gate.rmdir()
            await process.wait()
    finally:
        loop.remove_reader(master)
        os.close(master)
    assert process.returncode == 0
    assert b"[0/3 answered, " in seen
