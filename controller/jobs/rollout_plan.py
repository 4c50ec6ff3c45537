"""A rollout's settings resolved against its hosts, and the rule of a host's failure."""

from __future__ import annotations

import math
import time

from controller.errors import BadRequest
from schemas.api import RolloutRequest
from schemas.messages import ExecResult, ResultStatus, RolloutPlan, RolloutState


def resolve_plan(rollout: RolloutRequest, hosts: int, *, delivery_timeout_s: float) -> RolloutPlan:
    """``batch_size`` and ``max_failures`` as numbers of hosts: ``"N%"`` of ``hosts``,
    the batch rounded up (at least 1), the failures rounded down."""
    batch = rollout.batch_size
    if isinstance(batch, str):
        batch = max(1, math.ceil(hosts * int(batch[:-1]) / 100))
    failures = rollout.max_failures
    if isinstance(failures, str):
        failures = hosts * int(failures[:-1]) // 100
    return RolloutPlan(
        batch_size=batch,
        max_failures=failures,
        pause_s=rollout.pause_s,
        delivery_timeout_s=delivery_timeout_s,
    )


WINDOW_START_SLACK_S = 5.0
"""What each window may take to start its hosts (recording them, taking slots,
publishing) on top of their deadlines: without it, a rollout whose hosts all fit one
window would have no time to start its first host."""


def worst_case_s(
    plan: RolloutPlan, hosts: int, *, host_deadline_s: float, slot_wait_s: float = 0.0
) -> float:
    """The longest the rollout may take: every window starts (within
    :data:`WINDOW_START_SLACK_S`) and runs to its hosts' deadline (``timeout`` plus the
    delivery margin), plus every pause, plus (for a key with ``max_hosts``)
    ``slot_wait_s`` of waiting for host slots its other requests hold."""
    windows = math.ceil(hosts / plan.batch_size)
    waits = 0.0 if plan.max_hosts is None else slot_wait_s
    per_window = host_deadline_s + WINDOW_START_SLACK_S
    return windows * per_window + max(0, hosts - 1) * plan.pause_s + waits


def check_fits(
    plan: RolloutPlan,
    hosts: int,
    *,
    host_deadline_s: float,
    retention_s: float,
    slot_wait_s: float = 0.0,
) -> None:
    """Raises: BadRequest when the rollout's worst case (:func:`worst_case_s`) would
    outlive its record."""
    longest = worst_case_s(plan, hosts, host_deadline_s=host_deadline_s, slot_wait_s=slot_wait_s)
    waits = "" if plan.max_hosts is None else f", max_hosts_wait_s {slot_wait_s:g}"
    if longest > retention_s:
        raise BadRequest(
            f"rollout: its worst case ({hosts} hosts, batch_size {plan.batch_size}, "
            f"{host_deadline_s:g} s per host, pause_s {plan.pause_s:g}{waits}) "
            f"takes {longest:g} s, "
            f"more than the job retention ({retention_s:g} s): use a larger batch_size, "
            "a shorter timeout or pause"
        )


def failures_stop(failures: int, max_failures: int) -> str | None:
    """Why a rollout with ``failures`` failed hosts starts no further host; None while
    ``max_failures`` allows them."""
    if failures <= max_failures:
        return None
    return f"rollout stopped: {failures} hosts failed (max_failures {max_failures})"


def host_failed(result: ExecResult) -> bool:
    """A rollout's host failed: its status is not ``completed``, or its exit code is
    not 0."""
    return result.status is not ResultStatus.COMPLETED or result.exit_code != 0


def last_started(state: RolloutState, host_deadline_s: float) -> float | None:
    """When (``time.monotonic()``) the last host recorded as started started, told by
    its deadline (``host_deadline_s`` after its start), so that after a takeover the
    next start still waits ``pause_s`` from it; None before any host started."""
    if not state.started:
        return None
    started_at = max(state.started.values()) - host_deadline_s
    return time.monotonic() - max(0.0, time.time() - started_at)
