"""Process groups an agent left behind when it was killed mid-job, found and killed
when it starts again.

While a job's process runs, one small file in ``state_dir`` names it: job id,
hostname, process group id (the job's process leads its own group), the process's
start time (``/proc/<pid>/stat`` field 22, clock ticks since boot) and the boot id.
It is written when the process starts (a temporary file renamed into place) and
removed once the job's result is delivered. A file still there when the agent
starts belongs to a job the previous agent never finished: its group is killed
(SIGKILL) only when the boot id and the leader's start time both still match, since
pids are reused; a mismatch kills nothing. Either way the job gets a ``failed``
result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.logs import log_fields
from schemas.messages import ExecResult, ResultStatus

log = logging.getLogger("nexec.agentd.orphans")

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
SUFFIX = ".job"
KILLED = "agent restarted while running; its process group was killed"
ALREADY_ENDED = "agent restarted while running; its process had already ended"


@dataclass(frozen=True, slots=True)
class RunningJob:
    """What one state file says about a job's process."""

    job_id: str
    hostname: str
    pgid: int
    start_time: int
    boot_id: str


@dataclass(frozen=True, slots=True)
class Orphan:
    """A job the previous agent left running, after it was dealt with."""

    job: RunningJob
    error: str
    """The ``failed`` result's error: :data:`KILLED` or :data:`ALREADY_ENDED`."""
    path: Path

    def result(self) -> ExecResult:
        """The job's ``failed`` result."""
        return ExecResult(
            job_id=self.job.job_id,
            hostname=self.job.hostname,
            status=ResultStatus.FAILED,
            changed=True,
            error=self.error,
        )

    def forget(self) -> None:
        """Remove the orphan's file, once its result is recorded. Never raises."""
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def boot_id() -> str:
    """This boot's id.

    Raises:
        OSError: ``/proc`` cannot be read.
    """
    return BOOT_ID_FILE.read_text().strip()


def process_start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot; None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


class RunningJobs:
    """The state files of the jobs whose processes this agent runs."""

    def __init__(self, state_dir: Path, hostname: str) -> None:
        """Raises:
        OSError: ``state_dir`` cannot be made, or ``/proc`` cannot be read.
        """
        self._dir = state_dir
        self._hostname = hostname
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._boot_id = boot_id()

    def _path(self, job_id: str) -> Path:
        # Agents of other hostnames may share the directory, and run the same job.
        name = hashlib.sha256(f"{self._hostname}/{job_id}".encode()).hexdigest()[:32]
        return self._dir / (name + SUFFIX)

    def started(self, job_id: str, pid: int) -> None:
        """Note that ``job_id``'s process ``pid`` (leader of its group) runs. Never
        raises: a file that cannot be written is logged, the job runs on."""
        start_time = process_start_time(pid)
        if start_time is None:
            return
        job = RunningJob(job_id, self._hostname, pid, start_time, self._boot_id)
        path = self._path(job_id)
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(asdict(job)))
            temporary.rename(path)
        except OSError as exc:
            log.error(
                "job %r: state file not written: %s", job_id, exc, extra=log_fields(job_id=job_id)
            )

    def ended(self, job_id: str) -> None:
        """Forget ``job_id``: its result is delivered. Never raises."""
        try:
            self._path(job_id).unlink(missing_ok=True)
        except OSError as exc:
            log.error(
                "job %r: state file not removed: %s", job_id, exc, extra=log_fields(job_id=job_id)
            )

    def reap(self) -> list[Orphan]:
        """Kill the process groups that the files left by a previous agent name, if
        they are still the same processes; unreadable files are logged and removed.
        Files of other hostnames (agents sharing the directory) are left alone. The
        files of the orphans returned stay until :meth:`Orphan.forget`."""
        orphans: list[Orphan] = []
        for path in sorted(self._dir.iterdir()):
            job = self._read(path)
            if job is None or job.hostname != self._hostname:
                continue
            orphans.append(Orphan(job, self._kill(job), path))
        return orphans

    def _read(self, path: Path) -> RunningJob | None:
        """The file's job, or None (and the file removed) when it is not one."""
        try:
            data = json.loads(path.read_bytes())
            job = RunningJob(**data)
            if not all(isinstance(getattr(job, name), type_) for name, type_ in _TYPES.items()):
                raise TypeError("a field of the wrong type")
            if path.suffix != SUFFIX:
                raise ValueError("not a state file")
        except (OSError, ValueError, TypeError) as exc:
            log.warning("removing unusable state file %r: %r", str(path), str(exc))
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return job

    def _kill(self, job: RunningJob) -> str:
        """SIGKILL ``job``'s group if its leader is still the process it started."""
        same = (
            job.boot_id == self._boot_id
            and job.pgid > 1
            and process_start_time(job.pgid) == job.start_time
        )
        if same:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(job.pgid, signal.SIGKILL)
                log.warning(
                    "job %r: killed process group %d left running",
                    job.job_id,
                    job.pgid,
                    extra=log_fields(job_id=job.job_id),
                )
                return KILLED
        log.warning(
            "job %r: its process had ended before the agent restarted",
            job.job_id,
            extra=log_fields(job_id=job.job_id),
        )
        return ALREADY_ENDED


_TYPES = {"job_id": str, "hostname": str, "pgid": int, "start_time": int, "boot_id": str}
