"""A rollout waiting for one of its key's host slots starts no host while the fleet is
paused, even once a slot comes free (docs/jobs.md, "Rollouts": fleet pause and
``max_hosts``). Real NATS, a real controller and agents."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.appkeys import FLEET_PAUSE, ROLLOUT_STORE
from tests.helpers import Fifo, LiveAgent, MakeController, told_then_gated
from tests.test_max_hosts import limited_key
from tests.test_rollout import until_entry, wait_until_ended
from tests.test_rollout_finish import PAIR, join

LEASE_S = 0.6
"""The driver renews its lease every 0.2 s while it waits."""


async def test_a_host_slot_freed_during_a_fleet_pause_starts_nothing(
    make_controller: MakeController, live_agent: LiveAgent, started: Fifo, tmp_path: Path
) -> None:
    controller = await make_controller(rollout_lease_s=LEASE_S, host_slots_retry_s=0.05)
    await join(controller, live_agent, ["r1", "r2"], PAIR)
    await join(controller, live_agent, ["r3"], "third:yes")
    key = limited_key(tmp_path / "keys.json", controller)  # max_hosts 2
    gate = tmp_path / "gate"
    gate.mkdir()
    hold = {"command": told_then_gated(started, gate), "timeout": 30}
    holding = asyncio.create_task(
        controller.request("POST", f"/node/{PAIR}/command/shell", json=hold, key=key)
    )
    await started.lines(2)  # both of the key's slots are held
    body = {"command": "true", "timeout": 30, "rollout": {"batch_size": 1}}
    answer = await controller.request(
        "POST", "/node/third:yes/command/shell?wait=false", json=body, key=key
    )
    assert answer.status == 202, answer.body
    job_id = answer.body["job_id"]
    assert (await controller.request("POST", "/fleet/pause")).status == 200
    await controller.app[FLEET_PAUSE].wait_until(lambda paused: paused is not None, 10)

    gate.rmdir()
    assert (await holding).status == 202  # answered once its slots were given back
    store = controller.app[ROLLOUT_STORE]
    # Two renewals of the lease: the driver has looked for a slot (every 0.05 s) since.
    first = await until_entry(store, job_id, lambda _: True)
    renewed = await until_entry(store, job_id, lambda _: True, after=first.revision)
    assert renewed.state.started == {}, renewed.state

    assert (await controller.request("POST", "/fleet/resume")).status == 200
    job = await wait_until_ended(controller, job_id)
    assert [(r["hostname"], r["status"]) for r in job["results"]] == [("r3", "completed")]
