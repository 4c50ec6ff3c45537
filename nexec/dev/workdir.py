"""The temporary directory of one ``nexec dev`` run, and the removal of those left
by runs that were killed before they could remove their own (SIGKILL).

A run's directory is ``<tmp>/nexec-dev-<pid>-<random>``, ``<pid>`` being the
``nexec dev`` that made it, which holds an exclusive ``flock`` on it while it
runs. A later run removes such a directory when both say its owner is gone:
``<pid>`` no longer runs (a recycled pid only delays the removal), and the lock
is free (the kernel releases it when its holder dies, so a pid from another pid
namespace sharing ``/tmp`` cannot fool it). The pid alone covers the instant
between creating a directory and locking it; the lock alone covers recycled pids
and foreign namespaces. Only directories of this user are considered.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "nexec-dev-"
_NAME_RE = re.compile(rf"{PREFIX}(?P<pid>[0-9]+)-[a-z0-9_]+")


@contextmanager
def dev_work_dir(parent: Path | None = None) -> Iterator[Path]:
    """A fresh, locked ``nexec-dev-<pid>-<random>`` directory in ``parent`` (default: the
    system's temporary directory), removed with everything in it at exit.

    Raises:
        OSError: the directory could not be made, locked or removed.
    """
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield path
    finally:
        try:
            shutil.rmtree(path)
        finally:
            os.close(fd)


def remove_stale_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the directories in ``parent`` (default: the system's temporary directory)
    whose ``nexec dev`` is gone (see the module's docstring); returns them, sorted.

    Raises:
        OSError: a stale directory could not be removed.
    """
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    removed = []
    for path in sorted(parent.glob(f"{PREFIX}*")):
        match = _NAME_RE.fullmatch(path.name)
        if match is None or _pid_runs(int(match["pid"])) or not _is_my_directory(path):
            continue
        if _remove_unless_locked(path):
            removed.append(path)
    return removed


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _is_my_directory(path: Path) -> bool:
    try:
        status = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid()


def _remove_unless_locked(path: Path) -> bool:
    """Remove ``path`` if nobody holds its lock; False if someone does or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # another run removed it first
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        shutil.rmtree(path)
    except BlockingIOError:
        return False  # its run is alive
    except FileNotFoundError:
        return False  # another run removed it after we opened it
    finally:
        os.close(fd)
    return True
