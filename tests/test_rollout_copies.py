"""The per-host path of a rollout (docs/performance.md, N7): each host's copy collected
by callbacks (controller/jobs/copies.py), its entry written through the stream
writer. Real NATS, a real controller, real agents (one a process, frozen with
SIGSTOP)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import ROLLOUT_STORE
from controller.jobs.rollout import RolloutRun
from controller.jobs.rollout_store import RolloutChanged
from schemas.messages import RolloutState
from schemas.subjects import Subjects
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
)
from tests.test_rollout import wait_until_ended


async def test_an_entry_is_written_only_over_the_revision_read(controller: Controller) -> None:
    store = controller.app[ROLLOUT_STORE]
    first = await store.create("j-1", RolloutState(driver="a", lease_until=1.0))
    second = await store.update("j-1", RolloutState(driver="b", lease_until=2.0), first)
    assert second > first
    stored = await store.read("j-1")
    assert stored is not None and (stored.state.driver, stored.revision) == ("b", second)
    with pytest.raises(RolloutChanged):
        await store.update("j-1", RolloutState(driver="c", lease_until=3.0), first)
    stored = await store.read("j-1")
    assert stored is not None and stored.state.driver == "b"


async def test_a_host_that_acknowledged_and_fell_silent_is_no_reply_at_its_deadline(
    make_controller: MakeController, live_agent_process: LiveAgentProcess, started: Fifo
) -> None:
    """r1 acknowledges, starts the command, and is frozen before it ends (or its timeout);
    the agent watch is set too slow to decide first: at r1's own deadline (timeout +
    delivery margin, counted from its start) it is ``no_reply``, recorded, and the
    rollout goes on with r2 (max_failures 1)."""
    controller = await make_controller(delivery_margin_s=0.5, agent_lost_after_s=120)
    env = f"PATH={DEFAULT_BASE_ENV['PATH']}"
    agents = {}
    for host in ("r1", "r2"):
        agents[host] = await live_agent_process(
            controller, host, "--labels", "pool:copies", "--allow-shell",
            "--base-env", f"NEXEC_HOST={host}", "--base-env", env,
        )  # fmt: skip
    body = {
        "command": f'echo "$NEXEC_HOST" > {started.path}; [ "$NEXEC_HOST" != r1 ] || sleep 5',
        "timeout": 2,
        "rollout": {"batch_size": 1, "max_failures": 1},
    }  # fmt: skip
    answer = asyncio.create_task(
        controller.request("POST", "/node/pool:copies/command/shell", json=body)
    )
    assert await started.lines(1) == ["r1"]
    os.kill(agents["r1"].pid, signal.SIGSTOP)
    try:
        assert await started.lines(1) == ["r2"]  # r1 decided: the next host started
        response = await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)
    finally:
        os.kill(agents["r1"].pid, signal.SIGCONT)
    by_host = {r["hostname"]: r for r in response.body["results"]}
    assert by_host["r1"]["status"] == "no_reply"
    assert by_host["r1"]["error"].startswith("acknowledged, but no result recorded within")
    assert by_host["r2"]["status"] == "completed"
    job = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert job.body["rollout"]["failed"] == 1
    recorded = {r["hostname"]: r["status"] for r in job.body["results"]}
    late = job.body.get("late") or {}
    assert recorded.get("r1") == "no_reply" or "r1" in late  # the verdict is in the record


async def test_a_cancelled_rollout_waits_for_its_running_hosts_without_spinning(
    controller: Controller,
    live_agent: LiveAgent,
    tmp_path: Path,
    started: Fifo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a cancel the driver waits for its running hosts (here: ignoring SIGTERM,
    held by a gate, with a long kill grace) to end. It used to leave its wake event
    set, so each of its waits returned at once: it ran every turn of the event loop
    until they ended. Counted: its waits while the test makes 20 requests."""
    waits = 0
    settle = RolloutRun._settle

    async def counted(self: RolloutRun, *args: Any, **kwargs: Any) -> None:
        nonlocal waits
        waits += 1
        await settle(self, *args, **kwargs)

    monkeypatch.setattr(RolloutRun, "_settle", counted)
    for host in ("r1", "r2", "r3"):
        await live_agent(
            controller, host, labels={"pool": "spin"}, allow_shell=True, kill_grace_s=60,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip
    gate = tmp_path / "gate"
    gate.mkdir()
    command = (
        f"trap '' TERM; echo \"$NEXEC_HOST\" > {started.path}; "
        f"while [ -d {gate} ]; do sleep 0.05; done"
    )
    body = {"command": command, "timeout": 60, "rollout": {"batch_size": 2}}
    answer = await controller.request("POST", "/node/pool:spin/command/shell?wait=false", json=body)
    job_id = answer.body["job_id"]
    assert sorted(await started.lines(2)) == ["r1", "r2"]
    assert (await controller.request("POST", f"/job/{job_id}/cancel")).status == 202
    before = waits
    for _ in range(20):
        job = await controller.request("GET", f"/job/{job_id}")
        assert job.body["rollout"]["running"] == 2
    assert waits - before < 10, waits - before
    gate.rmdir()
    final = await wait_until_ended(controller, job_id)
    assert [r["status"] for r in final["results"]] == ["cancelled", "cancelled", "skipped"]


async def test_hosts_are_published_in_hostname_order(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    """The start order is the publish order (docs/jobs.md, "Rollouts"): seen by a
    subscriber of every job subject, each turn's hosts come in hostname order, and no
    host before one ahead of it."""
    hosts = [f"o{n}" for n in range(1, 8)]
    for host in reversed(hosts):
        await live_agent(controller, host, labels={"pool": "order"})
    published: list[str] = []
    subscription = await nc.subscribe(Subjects().exec_every(), cb=None)
    await nc.flush()
    try:
        body = {"command": "true", "rollout": {"batch_size": 3}}
        answer = await controller.exec("pool:order", body)
        assert [r["status"] for r in answer.body["results"]] == ["completed"] * len(hosts)
        for _ in hosts:
            published.append((await subscription.next_msg(timeout=STARTUP_TIMEOUT_S)).subject)
    finally:
        await subscription.unsubscribe()
    assert published == [Subjects().exec_host(host) for host in hosts]
