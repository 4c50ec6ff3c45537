"""A controller that loses a rollout's lease stops collecting every host of it, those
it followed after a takeover included (docs/jobs.md, "Rollouts"; docs/operations.md,
"Monitoring"): the controller driving the rollout now decides and counts them."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from controller.appkeys import DISPATCHER, ROLLOUT_STORE, ROLLOUTS
from controller.jobs.collector import host_key
from controller.jobs.rollout_store import RolloutStore
from schemas.messages import ResultStatus
from tests.helpers import LiveAgent, MakeController, until
from tests.test_rollout import wait_until_ended
from tests.test_rollout_counts import LEASE_S, h2_held_back

LOST_WITHIN_S = 2 * LEASE_S
"""Time enough for the controller to see its lease lost (its next renewal), far less
than the host's deadline (the job's timeout, 60 s)."""


async def hand_over(store: RolloutStore, job_id: str, *, taken_back: bool) -> None:
    """Name another controller the rollout's driver: with a lease that has passed (this
    controller takes the rollout back) or not (nobody takes it over yet)."""
    stored = await store.read(job_id)
    assert stored is not None
    lease_until = time.time() + (-1 if taken_back else 3600)
    taken = msgspec.structs.replace(
        stored.state, driver="another-controller", lease_until=lease_until
    )
    await store.update(job_id, taken, stored.revision)


async def test_a_host_followed_after_a_takeover_stops_being_collected_with_the_lease(
    make_controller: MakeController, live_agent: LiveAgent, tmp_path: Path
) -> None:
    controller = await make_controller(rollout_lease_s=LEASE_S)
    job_id, gate = await h2_held_back(controller, live_agent, tmp_path, timeout_s=60)
    dispatcher, rollouts = controller.app[DISPATCHER], controller.app[ROLLOUTS]
    store = controller.app[ROLLOUT_STORE]
    h2 = host_key(job_id, "h2")

    # The lease lost while h2's copy runs: its collection stops.
    await hand_over(store, job_id, taken_back=False)
    await until(lambda: h2 not in dispatcher.collectors, LOST_WITHIN_S)
    # Taken back: h2, still running, is followed.
    await hand_over(store, job_id, taken_back=True)
    await until(lambda: rollouts.taken_over == 1 and h2 in dispatcher.collectors)
    # The lease lost again while h2 is followed: that collection stops too.
    await hand_over(store, job_id, taken_back=False)
    await until(lambda: h2 not in dispatcher.collectors, LOST_WITHIN_S)
    # Taken back again; h2 finishes and is decided (and counted) by that collection only.
    await hand_over(store, job_id, taken_back=True)
    await until(lambda: rollouts.taken_over == 2 and h2 in dispatcher.collectors)
    gate.rmdir()
    job = await wait_until_ended(controller, job_id)

    assert [(r["hostname"], r["status"]) for r in job["results"]] == [
        ("h1", "completed"),
        ("h2", "completed"),
    ]
    assert job["late"] == {}, job
    assert +dispatcher.counters.hosts == {ResultStatus.COMPLETED: 2}
    assert not dispatcher.collectors
