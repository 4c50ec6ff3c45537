"""Each host of a rollout is counted once in a controller's host outcomes
(``nexec_host_results_total``, ``$SRV.STATS``'s ``hosts_*``), a takeover included:
here the controller that drove the rollout loses its lease, and takes the rollout back
once the controller that took it stopped (docs/operations.md, "Monitoring")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import DISPATCHER, ROLLOUT_STORE, ROLLOUTS
from schemas.messages import ResultStatus
from tests.helpers import STARTUP_TIMEOUT_S, Controller, LiveAgent, MakeController, gated, until
from tests.test_metrics import scrape, value
from tests.test_rollout import wait_until_ended

LEASE_S = 3.0
"""The controller renews its lease every third of it, and looks for rollouts to take
over every half of it."""


async def h2_held_back(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path, *, timeout_s: int
) -> tuple[str, Path]:
    """A rollout on agents h1 and h2 (both at once) where h2 runs until the test
    removes the gate (a directory in ``tmp_path``): its job id and the gate, once h1
    is decided and counted."""
    for host in ("h1", "h2"):
        env = {**DEFAULT_BASE_ENV, "NEXEC_HOST": host}
        await live_agent(controller, host, labels={"pool": "pair"}, base_env=env)
    gate = tmp_path / "gate"
    gate.mkdir()
    line = f'if [ "$NEXEC_HOST" = h2 ]; then {gated(gate)}; fi'
    rollout = {"batch_size": 2}
    body = {"command": "sh", "args": ["-c", line], "timeout": timeout_s, "rollout": rollout}
    response = await controller.request(
        "POST", "/node/pool:pair/command/exec?wait=false", json=body
    )
    assert response.status == 202, response.body
    counters = controller.app[DISPATCHER].counters
    await until(lambda: counters.hosts[ResultStatus.COMPLETED] == 1)  # h1, decided here
    return str(response.body["job_id"]), gate


async def test_a_controller_taking_its_own_rollout_back_counts_each_host_once(
    make_controller: MakeController, live_agent: LiveAgent, tmp_path: Path
) -> None:
    controller = await make_controller(rollout_lease_s=LEASE_S)
    job_id, gate = await h2_held_back(controller, live_agent, tmp_path, timeout_s=10)
    dispatcher = controller.app[DISPATCHER]
    counters = dispatcher.counters

    # Cut off before it stored h1 as finished, the controller's lease passed; another
    # controller took the rollout over (the entry names it) and stopped at once.
    store = controller.app[ROLLOUT_STORE]
    stored = await store.read(job_id)
    assert stored is not None
    taken = msgspec.structs.replace(
        stored.state,
        driver="another-controller",
        lease_until=time.time() - 1,
        finished={host: failed for host, failed in stored.state.finished.items() if host != "h1"},
    )
    await store.update(job_id, taken, stored.revision)
    # This controller loses the lease at its next write, then takes the rollout back,
    # following h1 (recorded already) and h2 (still running).
    await asyncio.wait_for(controller.app[ROLLOUTS].took_over.wait(), STARTUP_TIMEOUT_S)
    # The copy of h2 published before stopped with the lease: only the takeover's
    # collection of h2 is left, and it gets h2's result.
    await until(lambda: dispatcher.copies_collecting == 0)
    gate.rmdir()
    job = await wait_until_ended(controller, job_id)

    assert [(r["hostname"], r["status"]) for r in job["results"]] == [
        ("h1", "completed"),
        ("h2", "completed"),
    ]
    assert job["late"] == {}, job  # no verdict on a host that answered
    assert +counters.hosts == {ResultStatus.COMPLETED: 2}
    series = await scrape(controller.url)
    assert value(series, "nexec_host_results_total", status="completed") == 2
