"""``nexec dev`` (what ``make run`` starts): up, usable as printed, gone after Ctrl-C,
and gone, children too, after a SIGKILL, its directory removed at the next start."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest

from nexec.dev import pdeathsig
from nexec.dev.processes import ManagedProcess
from nexec.dev.workdir import dev_work_dir, remove_stale_work_dirs
from tests.helpers import gone, wait_gone

BANNER_END_RE = re.compile(r"Ctrl-C stops everything")


def start_dev() -> ManagedProcess:
    argv = [sys.executable, "-m", "nexec.cli", "dev", "--port", "0"]
    return ManagedProcess(argv, name="dev")


async def test_nexec_dev_runs_the_printed_curl_and_nexec_call_and_stops_cleanly() -> None:
    dev = start_dev()
    try:
        await asyncio.to_thread(dev.wait_for_line, BANNER_END_RE, 60)
        banner = "\n".join(dev.last_lines())
        exec_url = re.search(r"curl -s -X POST (\S+)", banner)
        key = re.search(r"Authorization: Bearer (nxk_\S+)'", banner)
        assert exec_url is not None and key is not None, banner
        assert exec_url[1].startswith("http://127.0.0.1:")
        console = re.search(r"console   (\S+)", banner)
        metrics = re.search(r"metrics   (\S+)", banner)
        assert console is not None and metrics is not None, banner
        children = psutil.Process(dev.pid).children(recursive=True)
        assert len(children) == 3, children

        async with (
            aiohttp.ClientSession() as session,
            session.post(
                exec_url[1],
                json={"command": "uname", "args": ["-a"]},
                headers={"Authorization": f"Bearer {key[1]}"},
            ) as response,
        ):
            body = await response.json()
        assert response.status == 202, body
        [result] = body["results"]
        assert result["status"] == "completed"
        assert result["stdout"].startswith("Linux")
        async with aiohttp.ClientSession() as session:
            async with session.get(console[1]) as page:
                assert page.status == 200
                assert "<form" in await page.text()
            async with session.get(metrics[1]) as scraped:
                assert scraped.status == 200
                assert "nexec_jobs_total" in await scraped.text()

        # The same call as the nexec command, with the environment the banner names.
        exported = re.search(r"export NEXEC_URL=(\S+) NEXEC_API_KEY=(\S+)\n", banner)
        command = re.search(r"\n  nexec (exec .*)\n", banner)
        assert exported is not None and command is not None, banner
        env = {**os.environ, "NEXEC_URL": exported[1], "NEXEC_API_KEY": exported[2]}
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nexec.cli", *command[1].split(), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await cli.communicate()
        assert (cli.returncode, out.decode(), err) == (0, result["stdout"], b"")

        assert await asyncio.to_thread(dev.stop, timeout_s=30, signum=signal.SIGINT) == 0
        for child in children:
            assert await gone(child.pid), f"{child.name()} outlived nexec dev"
    finally:
        await asyncio.to_thread(dev.stop, timeout_s=30, signum=signal.SIGINT)


def started_dev() -> tuple[ManagedProcess, list[psutil.Process], Path]:
    """A ``nexec dev`` past its banner, its three children, and its temporary directory."""
    dev = start_dev()
    dev.wait_for_line(BANNER_END_RE, 60)
    children = psutil.Process(dev.pid).children(recursive=True)
    assert len(children) == 3, children
    [nats] = [child for child in children if child.name() == "nats-server"]
    store_dir = nats.cmdline()[nats.cmdline().index("--store_dir") + 1]
    return dev, children, Path(store_dir).parent


def kill_all(processes: list[psutil.Process]) -> None:
    """SIGKILL what a failed test left running (the defect under test)."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def test_nexec_dev_killed_leaves_no_process_and_the_next_start_removes_its_directory() -> None:
    dev, children, work_dir = started_dev()
    try:
        dev.stop(signum=signal.SIGKILL)
        for child in children:
            assert wait_gone(child.pid), f"{child.name()} outlived nexec dev's SIGKILL"
    finally:
        kill_all(children)
    assert work_dir.is_dir()  # nothing could remove it
    second = start_dev()
    try:
        second.wait_for_line(BANNER_END_RE, 60)
        assert not work_dir.exists(), "the next nexec dev left the killed run's directory"
    finally:
        assert second.stop(timeout_s=30, signum=signal.SIGINT) == 0


def test_nexec_dev_killed_while_stopping_leaves_no_process() -> None:
    """A supervisor's SIGTERM, then SIGKILL while nexec dev stops its children in
    order: killed right after the first child (the agent) exited, the other two
    have not been stopped yet."""
    dev, children, work_dir = started_dev()
    [agent] = [child for child in children if "agentd" in child.cmdline()]
    try:
        dev.popen.send_signal(signal.SIGTERM)
        assert wait_gone(agent.pid, timeout_s=30)
        dev.stop(signum=signal.SIGKILL)
        for child in children:
            assert wait_gone(child.pid), f"{child.name()} outlived nexec dev's SIGKILL"
    finally:
        kill_all(children)
    assert work_dir.is_dir()
    assert work_dir in remove_stale_work_dirs(work_dir.parent)
    assert not work_dir.exists()


def test_only_directories_of_gone_runs_are_removed(tmp_path: Path) -> None:
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # can never run
    stale = tmp_path / f"nexec-dev-{dead_pid}-abc_12"
    live = tmp_path / f"nexec-dev-{os.getpid()}-def"  # this process runs
    locked = tmp_path / f"nexec-dev-{dead_pid}-ghi"  # a run in another pid namespace
    other = tmp_path / "nexec-dev-jkl"  # not ours to judge
    for directory in (stale, live, locked, other):
        (directory / "nats").mkdir(parents=True)
    holder = os.open(locked, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert remove_stale_work_dirs(tmp_path) == [stale]
    finally:
        os.close(holder)
    assert sorted(tmp_path.iterdir()) == sorted([live, locked, other])
    with dev_work_dir(tmp_path) as mine:
        assert mine.name.startswith(f"nexec-dev-{os.getpid()}-")
        assert remove_stale_work_dirs(tmp_path) == [locked]
    assert not mine.exists()


def test_the_shim_starts_nothing_once_its_parent_is_gone() -> None:
    """The parent died between fork and prctl: the child must not run on, unwatched."""
    not_the_parent = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    argv = [sys.executable, "-I", "-S", pdeathsig.__file__, str(not_the_parent), "true"]
    ended = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert ended.returncode == 1
    assert f"parent {not_the_parent} is gone; not starting 'true'" in ended.stderr


def test_die_with_parent_refuses_a_thread_other_than_main() -> None:
    """The kernel would kill the child when that thread ends, not the process."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = pool.submit(ManagedProcess, ["true"], name="x", die_with_parent=True)
        with pytest.raises(RuntimeError, match="die_with_parent needs the main thread"):
            started.result()
