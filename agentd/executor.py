"""Running one job as a process: no shell, its own process group, capped output.

The :class:`Executor` protocol is the seam for fleet simulations: a fake that
answers without spawning may stand in for :class:`ProcessExecutor`; NATS is
never faked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import Protocol

from agentd.output import CappedOutput, read_capped
from schemas import ExecJob, ExecResult, ResultStatus

# After the process exits, how long its output pipes may stay open (held by a
# background child) before the rest of its process group is killed.
PIPE_CLOSE_GRACE_S = 0.5


class Executor(Protocol):
    async def run(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        """Run ``job`` for at most ``timeout_s`` seconds, or until ``stop`` is set.

        Never raises for anything the job does: every outcome is a result.
        """
        ...


@dataclass(frozen=True, slots=True)
class ProcessExecutor:
    """Runs jobs with ``asyncio.create_subprocess_exec``.

    stdin is /dev/null; the process leads a new session (and so process group);
    on timeout or stop the group gets SIGTERM, then SIGKILL ``kill_grace_s``
    later. Each of stdout and stderr keeps at most ``output_cap_bytes``.
    """

    hostname: str
    output_cap_bytes: int
    kill_grace_s: float

    async def run(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                job.command,
                *job.args,
                cwd=job.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            return ExecResult(
                job_id=job.job_id,
                hostname=self.hostname,
                status=ResultStatus.FAILED,
                error=describe_spawn_error(job, exc),
                duration_ms=_elapsed_ms(started),
            )
        stdout = CappedOutput(self.output_cap_bytes)
        stderr = CappedOutput(self.output_cap_bytes)
        assert process.stdout is not None and process.stderr is not None
        readers = asyncio.gather(
            read_capped(process.stdout, stdout), read_capped(process.stderr, stderr)
        )
        status, error = await self._wait(process, timeout_s, stop, readers)
        return ExecResult(
            job_id=job.job_id,
            hostname=self.hostname,
            status=status,
            stdout=stdout.text(),
            stderr=stderr.text(),
            exit_code=process.returncode,
            duration_ms=_elapsed_ms(started),
            changed=True,
            error=error,
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            stdout_bytes=stdout.total_bytes,
            stderr_bytes=stderr.total_bytes,
        )

    async def _wait(
        self,
        process: asyncio.subprocess.Process,
        timeout_s: float,
        stop: asyncio.Event,
        readers: asyncio.Future[tuple[None, None]],
    ) -> tuple[ResultStatus, str | None]:
        exited = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({exited, stopped}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            stopped.cancel()
        if exited.done():
            await _close_pipes(process, readers, PIPE_CLOSE_GRACE_S)
            return ResultStatus.COMPLETED, None
        await self._terminate_group(process, readers)
        if stop.is_set():
            return ResultStatus.CANCELLED, "cancelled: the agent is shutting down"
        return ResultStatus.TIMEOUT, f"timed out after {timeout_s:g}s; process group killed"

    async def _terminate_group(
        self, process: asyncio.subprocess.Process, readers: asyncio.Future[tuple[None, None]]
    ) -> None:
        """SIGTERM the group; after ``kill_grace_s`` SIGKILL whatever is left of it."""
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.gather(process.wait(), readers)), self.kill_grace_s
            )
        _signal_group(process.pid, signal.SIGKILL)
        await _collect_output(process, readers, self.kill_grace_s)


async def _close_pipes(
    process: asyncio.subprocess.Process,
    readers: asyncio.Future[tuple[None, None]],
    grace_s: float,
) -> None:
    """After the process exited, wait ``grace_s`` for its output pipes to close.

    A child left in the process group that still holds a pipe would keep the
    job open forever: then the group gets SIGKILL. Background children that
    closed or redirected their output are left alone.
    """
    try:
        await asyncio.wait_for(asyncio.shield(readers), grace_s)
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        await _collect_output(process, readers, grace_s)


async def _collect_output(
    process: asyncio.subprocess.Process,
    readers: asyncio.Future[tuple[None, None]],
    grace_s: float,
) -> None:
    """Reap the process and finish reading; stop reading after ``grace_s`` if a pipe
    is still held (by a process that left the group). Output read so far is kept."""
    await process.wait()
    try:
        await asyncio.wait_for(asyncio.shield(readers), grace_s)
    except TimeoutError:
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await readers


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def describe_spawn_error(job: ExecJob, exc: OSError | ValueError) -> str:
    """A one-line reason why ``job`` could not start."""
    if isinstance(exc, ValueError):
        return f"cannot start {job.command!r}: {exc}"
    if job.cwd is not None and exc.filename == job.cwd:
        return f"cannot change to working directory {job.cwd!r}: {exc.strerror}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {job.command!r}"
    if isinstance(exc, PermissionError):
        return f"permission denied: cannot execute {job.command!r}"
    return f"cannot start {job.command!r}: {exc.strerror or exc}"


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
