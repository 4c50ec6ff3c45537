"""Start a program that the kernel kills when its parent dies (Linux ``PR_SET_PDEATHSIG``).

``nexec dev`` starts its children through this shim: ``python -I -S pdeathsig.py
PARENT_PID PROGRAM [ARG...]`` asks for SIGKILL on the parent's death, checks that
PARENT_PID is still its parent (it may have died before the request), then
execs PROGRAM in place, same pid, which keeps the setting. Whatever ends the
parent, SIGKILL included, the kernel then kills the child: nothing else could
run in the parent to do it.

Why a shim rather than ``subprocess``'s ``preexec_fn``: Python code between fork
and exec in a process with threads (:class:`~nexec.dev.processes.ManagedProcess`
reads output in threads) can deadlock, and the documentation says so. The shim
costs one short interpreter start and runs on the standard library alone
(``-I -S``: no site-packages, no import of this package).

The kernel sends the signal when the *thread* that forked the child exits, not
the process: start such children from a thread that lives as long as they
should (``nexec dev`` starts them from its main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1


def command(argv: Sequence[str]) -> list[str]:
    """``argv`` run through this shim, with this process as the parent to die with."""
    return [sys.executable, "-I", "-S", __file__, str(os.getpid()), *argv]


def main(args: Sequence[str]) -> None:
    """Set the death signal, then exec ``args[1:]``.

    Raises:
        SystemExit: prctl failed (not Linux?), or the parent ``args[0]`` is gone already.
        OSError: the program could not be executed.
    """
    parent_pid, program = int(args[0]), list(args[1:])
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise SystemExit(f"pdeathsig: prctl: {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent_pid:
        raise SystemExit(f"pdeathsig: parent {parent_pid} is gone; not starting {program[0]!r}")
    os.execvp(program[0], program)


if __name__ == "__main__":
    main(sys.argv[1:])
