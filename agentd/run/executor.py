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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agentd.run.live import LiveOutput
from agentd.run.output import OutputPipe
from agentd.run.policy import Policy
from schemas.messages import ExecJob, ExecResult, ResultStatus

# After the process exits, how long its output pipes may stay open (held by a
# background child) before the rest of its process group is killed.
PIPE_CLOSE_GRACE_S = 0.5

OutputDone = asyncio.Future[tuple[None, None]]


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
    policy: Policy
    live_output: Callable[[ExecJob], LiveOutput] | None = None
    """Makes the sender of a job's live output chunks; None sends none."""
    on_start: Callable[[ExecJob, int], None] | None = None
    """Told each job's process id (its group's id) as soon as it started."""

    async def run(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        started = time.monotonic()
        live = self.live_output(job) if self.live_output is not None else None
        stdout = OutputPipe(self.output_cap_bytes, live.feeder("stdout") if live else None)
        stderr = OutputPipe(self.output_cap_bytes, live.feeder("stderr") if live else None)
        try:
            process = await _spawn(job, self.policy, stdout, stderr)
        except (OSError, ValueError) as exc:
            stdout.close()
            stderr.close()
            return self._not_started(job, exc, started)
        try:
            if self.on_start is not None:
                self.on_start(job, process.pid)
            output_done = asyncio.gather(stdout.closed, stderr.closed)
            status, error = await self._wait(process, timeout_s, stop, output_done)
        except asyncio.CancelledError:
            _signal_group(process.pid, signal.SIGKILL)  # never leave the job running
            raise
        finally:
            stdout.close()
            stderr.close()
            if live is not None:
                await live.close()
        return ExecResult(
            job_id=job.job_id,
            hostname=self.hostname,
            status=status,
            stdout=stdout.output.text(),
            stderr=stderr.output.text(),
            exit_code=process.returncode,
            duration_ms=_elapsed_ms(started),
            changed=True,
            error=error,
            stdout_truncated=stdout.output.truncated,
            stderr_truncated=stderr.output.truncated,
            stdout_bytes=stdout.output.total_bytes,
            stderr_bytes=stderr.output.total_bytes,
        )

    def _not_started(self, job: ExecJob, exc: OSError | ValueError, started: float) -> ExecResult:
        return ExecResult(
            job_id=job.job_id,
            hostname=self.hostname,
            status=ResultStatus.FAILED,
            error=describe_spawn_error(job, exc),
            duration_ms=_elapsed_ms(started),
        )

    async def _wait(
        self,
        process: asyncio.subprocess.Process,
        timeout_s: float,
        stop: asyncio.Event,
        output_done: OutputDone,
    ) -> tuple[ResultStatus, str | None]:
        exited = asyncio.ensure_future(process.wait())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({exited, stopped}, timeout=timeout_s, return_when="FIRST_COMPLETED")
        finally:
            stopped.cancel()
        if exited.done():
            await _finish_output(process, output_done, PIPE_CLOSE_GRACE_S)
            return ResultStatus.COMPLETED, None
        await self._terminate_group(process, output_done)
        if stop.is_set():
            return ResultStatus.CANCELLED, "cancelled; process group killed"
        return ResultStatus.TIMEOUT, f"timed out after {timeout_s:g}s; process group killed"

    async def _terminate_group(
        self, process: asyncio.subprocess.Process, output_done: OutputDone
    ) -> None:
        """SIGTERM the group; after ``kill_grace_s`` SIGKILL whatever is left of it."""
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(asyncio.gather(process.wait(), output_done)), self.kill_grace_s
            )
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(output_done), self.kill_grace_s)


async def _finish_output(
    process: asyncio.subprocess.Process, output_done: OutputDone, grace_s: float
) -> None:
    """After the process exited, wait ``grace_s`` for end of file on its output.

    A child left in the process group that still holds a pipe would keep the
    job open forever: then the group gets SIGKILL. Background children that
    closed or redirected their output are left alone. If a pipe is still held
    after that (by a process that left the group), reading stops there.
    """
    try:
        await asyncio.wait_for(asyncio.shield(output_done), grace_s)
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(output_done), grace_s)


async def _spawn(
    job: ExecJob, policy: Policy, stdout: OutputPipe, stderr: OutputPipe
) -> asyncio.subprocess.Process:
    """Start the job's process in a new session, stdin from /dev/null, with the
    policy's environment and user.

    Raises:
        OSError: it could not start (not found, not executable, bad cwd...).
        ValueError: an argument the OS cannot take (a NUL byte).
    """
    await stdout.start_reading()
    await stderr.start_reading()
    process = await asyncio.create_subprocess_exec(
        *policy.argv(job),
        cwd=job.cwd,
        env=policy.environment(job),
        user=policy.run_as_user,
        group=policy.run_as_group,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout.child_fd,
        stderr=stderr.child_fd,
        start_new_session=True,
    )
    stdout.close_child_end()
    stderr.close_child_end()
    return process


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
