"""The exit status of ``nexec exec``, ``shell``, ``watch`` and ``job``: one rule, here.

The text of :data:`RULE` is the epilog of ``nexec --help``; docs/client.md has the same
table. This module imports nothing but the standard library, so that ``--help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

OK = 0
USAGE = 2
"""A usage error (argparse's own status), or connection settings that cannot be read."""
TIMED_OUT = 124
"""A host whose command was killed at its timeout, as ``timeout(1)``."""
SIGNALLED_BASE = 128
"""A process a signal N ended: 128 + N, as a shell reports it."""
NEXEC_FAILED = 255
"""A host that failed, was cancelled, did not reply or was skipped by a rollout (or any
other status); a refusal by the API or an unreachable controller, as ssh does for its
own errors."""

RULE = """\
exit status (exec, shell, watch, job):
  0        every host completed with exit code 0 (--async: the job was accepted)
  N        otherwise the highest of each host's own status:
             a completed host's exit code;
             124 for a host that timed out (as timeout(1));
             128+N for a completed host whose process signal N ended;
             255 for a host that failed, was cancelled, did not reply
                 or was skipped by a rollout that stopped
  255      the API refused (400-503) or the controller could not be reached:
           its error and details on stderr
  2        a usage error, or connection settings that cannot be read"""


class HostResult(Protocol):
    """What the rule reads of a host's result (``schemas.messages.ExecResult``)."""

    @property
    def status(self) -> str: ...

    @property
    def exit_code(self) -> int | None: ...


def host_status(result: HostResult) -> int:
    """One host's contribution to the exit status."""
    if result.status == "completed":
        if result.exit_code is None:
            return NEXEC_FAILED
        if result.exit_code < 0:
            return min(SIGNALLED_BASE - result.exit_code, NEXEC_FAILED)
        return min(result.exit_code, NEXEC_FAILED)
    if result.status == "timeout":
        return TIMED_OUT
    return NEXEC_FAILED


def exit_status(results: Iterable[HostResult]) -> int:
    """0 when every host completed with exit code 0, else the highest host status."""
    return max((host_status(result) for result in results), default=OK)
