"""Rollouts: a few hosts at a time, in hostname order, stopping when hosts fail
(docs/jobs.md, "Rollouts"). Real NATS, a real controller, six real agents; each run
appends ``start <host>`` and ``end <host>`` to a file, and the tests assert on those
lines (overlaps and order), never on timing."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import FLEET_PAUSE, ROLLOUT_STORE
from controller.jobs.agent_watch import AGENT_LOST
from controller.jobs.rollout_store import RolloutStore, StoredRollout
from schemas.messages import RolloutState
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
    told_then_gated,
)

HOSTS = [f"r{n}" for n in range(1, 7)]
POOL = "pool:roll"


@pytest.fixture
async def fleet(controller: Controller, live_agent: LiveAgent) -> Controller:
    """Six agents r1..r6 labelled pool=roll, each with its name in ``$NEXEC_HOST``."""
    for host in HOSTS:
        await live_agent(
            controller,
            host,
            labels={"pool": "roll"},
            allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )
    return controller


def logged(log: Path, body: str = "sleep 0.2") -> str:
    """A command line that logs its start and end around ``body``, and exits as it."""
    return (
        f'echo "start $NEXEC_HOST" >> {log}; {body}; rc=$?; '
        f'echo "end $NEXEC_HOST" >> {log}; exit $rc'
    )


def most_at_once(lines: list[str]) -> int:
    running: set[str] = set()
    most = 0
    for line in lines:
        kind, host = line.split()
        if kind == "start":
            running.add(host)
            most = max(most, len(running))
        else:
            running.discard(host)
    return most


def starts(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split()[1] for line in lines if line.startswith("start ")]


def started_in_order(started: list[str], batch_size: int) -> bool:
    """Every host ran once, in hostname order as far as a window allows: hosts started
    together may write their lines in any order, so a host's line is less than
    ``batch_size`` places from its place in ``HOSTS``."""
    return sorted(started) == HOSTS and all(
        abs(place - HOSTS.index(host)) < batch_size for place, host in enumerate(started)
    )


async def shell(controller: Controller, body: dict[str, Any], query: str = "") -> Any:
    return await controller.request("POST", f"/node/{POOL}/command/shell{query}", json=body)


async def test_never_more_than_batch_size_at_once_in_hostname_order(
    fleet: Controller, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    answer = await shell(fleet, {"command": logged(log), "rollout": {"batch_size": 2}})
    assert answer.status == 202, answer.body
    assert answer.body["complete"] is True
    assert [r["hostname"] for r in answer.body["results"]] == HOSTS
    assert {r["status"] for r in answer.body["results"]} == {"completed"}
    lines = log.read_text().splitlines()
    assert len(lines) == 12
    assert most_at_once(lines) == 2
    assert started_in_order(starts(log), 2), starts(log)
    job = await fleet.request("GET", f"/job/{answer.body['job_id']}")
    assert job.body["state"] == "completed"
    assert job.body["rollout"] == {
        "batch_size": 2, "max_failures": 0, "pause_s": 0.0, "pending": 0, "running": 0,
        "finished": 6, "failed": 0, "skipped": 0, "stopped": None, "max_hosts": None,
    }  # fmt: skip


async def test_a_percentage_batch_is_rounded_up(fleet: Controller, tmp_path: Path) -> None:
    log = tmp_path / "log"
    dry = await shell(fleet, {"command": "true", "rollout": {"batch_size": "50%"}}, "?dry_run=true")
    assert dry.status == 200
    assert (dry.body["count"], dry.body["batch_size"]) == (6, 3)
    tiny = await shell(fleet, {"command": "true", "rollout": {"batch_size": "1%"}}, "?dry_run=true")
    assert tiny.body["batch_size"] == 1
    answer = await shell(fleet, {"command": logged(log), "rollout": {"batch_size": "40%"}})
    assert answer.status == 202, answer.body
    assert most_at_once(log.read_text().splitlines()) == 3  # 6 * 40% = 2.4, rounded up
    job = await fleet.request("GET", f"/job/{answer.body['job_id']}")
    assert job.body["rollout"]["batch_size"] == 3


async def test_a_failure_over_the_budget_skips_every_later_host(
    fleet: Controller, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    command = logged(log, 'test "$NEXEC_HOST" != r2')
    answer = await shell(fleet, {"command": command, "rollout": {"batch_size": 1}})
    assert answer.status == 202, answer.body
    by_host = {r["hostname"]: r for r in answer.body["results"]}
    assert by_host["r1"]["status"] == "completed"
    assert (by_host["r2"]["status"], by_host["r2"]["exit_code"]) == ("completed", 1)
    reason = "rollout stopped: 1 hosts failed (max_failures 0)"
    for host in HOSTS[2:]:
        assert by_host[host]["status"] == "skipped"
        assert (by_host[host]["changed"], by_host[host]["error"]) == (False, reason)
    assert starts(log) == ["r1", "r2"]  # nothing else ran
    job = await fleet.request("GET", f"/job/{answer.body['job_id']}")
    assert job.body["state"] == "stopped"
    progress = job.body["rollout"]
    assert (progress["finished"], progress["failed"], progress["skipped"]) == (2, 1, 4)
    assert progress["stopped"] == reason


async def test_max_failures_one_tolerates_one(fleet: Controller, tmp_path: Path) -> None:
    log = tmp_path / "log"
    command = logged(log, 'test "$NEXEC_HOST" != r2')
    rollout = {"batch_size": 1, "max_failures": 1}
    answer = await shell(fleet, {"command": command, "rollout": rollout})
    assert [r["exit_code"] for r in answer.body["results"]] == [0, 1, 0, 0, 0, 0]
    assert starts(log) == HOSTS
    job = await fleet.request("GET", f"/job/{answer.body['job_id']}")
    assert job.body["state"] == "completed"
    assert job.body["rollout"]["failed"] == 1


async def test_pause_between_starts_keeps_them_one_after_another(
    fleet: Controller, tmp_path: Path
) -> None:
    """With a pause longer than a run, batch_size 3 still starts hosts one by one, in
    order, each after the one before ended."""
    log = tmp_path / "log"
    rollout = {"batch_size": 3, "pause_s": 0.5}
    answer = await shell(fleet, {"command": logged(log, "true"), "rollout": rollout})
    assert answer.status == 202, answer.body
    lines = log.read_text().splitlines()
    assert lines == [f"{kind} {host}" for host in HOSTS for kind in ("start", "end")]


async def test_cancel_mid_rollout(fleet: Controller, tmp_path: Path, started: Fifo) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    command = told_then_gated(started, gate)
    answer = await shell(
        fleet, {"command": command, "timeout": 60, "rollout": {"batch_size": 2}}, "?wait=false"
    )
    assert answer.status == 202, answer.body
    assert answer.body["complete"] is False
    job_id = answer.body["job_id"]
    assert sorted(await started.lines(2)) == ["r1", "r2"]
    cancelled = await fleet.request("POST", f"/job/{job_id}/cancel")
    assert cancelled.status == 202
    final = await wait_until_ended(fleet, job_id)
    statuses = [r["status"] for r in final["results"]]
    assert statuses == ["cancelled", "cancelled", *["skipped"] * 4], final
    assert final["results"][2]["error"] == "rollout cancelled by admin"
    assert final["state"] == "cancelled"
    assert final["rollout"]["stopped"] == "rollout cancelled by admin"


async def wait_until_ended(controller: Controller, job_id: str) -> dict[str, Any]:
    """The job once it is no longer running (followed through its live output)."""
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output",
        headers={
            "Authorization": f"Bearer {controller.api_key}",
            "Accept": "application/x-ndjson",
        },
    ) as response:
        async for _ in response.content:
            pass
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.body["state"] != "running", job.body
    body: dict[str, Any] = job.body
    return body


@pytest.mark.parametrize(
    ("rollout", "field"),
    [
        ({"batch_size": 0}, "rollout.batch_size"),
        ({"batch_size": "0%"}, "rollout.batch_size"),
        ({"batch_size": "101%"}, "rollout.batch_size"),
        ({"batch_size": "x"}, "rollout.batch_size"),
        ({"batch_size": 1, "max_failures": -1}, "rollout.max_failures"),
        ({"batch_size": 1, "max_failures": "101%"}, "rollout.max_failures"),
        ({"batch_size": 1, "pause_s": 3601}, "rollout.pause_s"),
        ({"batch_size": 1, "unknown": 1}, "rollout"),
        ({}, "rollout"),
    ],
)
async def test_invalid_rollouts_name_the_field(
    controller: Controller, rollout: dict[str, Any], field: str
) -> None:
    answer = await controller.exec("_all", {"command": "true", "rollout": rollout})
    assert answer.status == 400, answer.body
    assert answer.body["details"].startswith(field), answer.body


async def test_a_rollout_on_any_is_refused(controller: Controller, live_agent: LiveAgent) -> None:
    await live_agent(controller, "solo")
    answer = await controller.exec("_any", {"command": "true", "rollout": {"batch_size": 1}})
    assert answer.status == 400
    assert answer.body["details"] == "rollout: not with _any (one host runs it)"


async def test_a_rollout_that_could_outlive_its_record_is_refused(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(job_retention_s=700, delivery_margin_s=3)
    for host in ("a", "b", "c"):
        await live_agent(controller, host)
    body = {"command": "true", "timeout": 300, "rollout": {"batch_size": 1}}
    answer = await controller.exec("_all", body)  # 3 x 303 s > 700 s
    assert answer.status == 400
    assert answer.body["details"].startswith("rollout: its worst case (3 hosts, batch_size 1")
    fits = await controller.exec("_all", {**body, "rollout": {"batch_size": 2}})
    assert fits.status == 202  # 2 x 303 s


async def test_an_agent_killed_mid_rollout_is_a_failure_not_a_hang(
    make_controller: MakeController,
    live_agent: LiveAgent,
    live_agent_process: LiveAgentProcess,
    tmp_path: Path,
    started: Fifo,
) -> None:
    """r3 is a real agent process, SIGKILLed while it runs its part: it becomes
    ``no_reply`` (agent lost), which is a failure; the rollout stops, never hangs."""
    controller = await make_controller(agent_lost_after_s=1.0)
    victim = await live_agent_process(
        controller, "r3", "--labels", "pool:roll", "--allow-shell",
        "--running-report-interval", "0.1",
        "--base-env", "NEXEC_HOST=r3", "--base-env", f"PATH={DEFAULT_BASE_ENV['PATH']}",
    )  # fmt: skip
    for host in ("r1", "r2", "r4", "r5", "r6"):
        await live_agent(
            controller, host, labels={"pool": "roll"}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host}, heartbeat_interval_s=0.3,
        )  # fmt: skip
    log = tmp_path / "log"
    hang = f'if [ "$NEXEC_HOST" = r3 ]; then echo $$ > {started.path}; exec sleep 300; fi'
    body = {"command": logged(log, hang), "timeout": 300, "rollout": {"batch_size": 1}}
    answer = asyncio.create_task(shell(controller, body))
    [group] = await started.lines(1)
    try:
        await asyncio.to_thread(victim.stop, signum=signal.SIGKILL)
        response = await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)
    finally:
        os.killpg(int(group), signal.SIGKILL)
    by_host = {r["hostname"]: r for r in response.body["results"]}
    assert by_host["r3"]["status"] == "no_reply"
    assert by_host["r3"]["error"].startswith(AGENT_LOST), by_host["r3"]
    assert [by_host[h]["status"] for h in ("r4", "r5", "r6")] == ["skipped"] * 3
    assert starts(log) == ["r1", "r2", "r3"]
    job = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert job.body["state"] == "stopped"
    assert job.body["rollout"]["failed"] == 1


async def test_whole_floats_are_integers_in_a_rollout_too(controller: Controller) -> None:
    """JSON has one number type: ``2.0`` is the integer 2, as for ``timeout``."""
    answer = await controller.exec(
        "_any", {"command": "true", "rollout": {"batch_size": 2.0, "max_failures": 1.0}}
    )
    assert answer.body["details"] == "rollout: not with _any (one host runs it)"


async def test_no_host_starts_while_the_fleet_is_paused(
    make_controller: MakeController, live_agent: LiveAgent, tmp_path: Path, started: Fifo
) -> None:
    """Paused while r1 runs: r1 finishes, and the driver renews its lease while it waits
    (so it has passed its check) without starting r2; resumed, the rest run."""
    controller = await make_controller(rollout_lease_s=0.6)
    for host in HOSTS:
        await live_agent(
            controller, host, labels={"pool": "roll"}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.mkdir()
    wait = told_then_gated(started, gate)
    body = {"command": logged(log, wait), "timeout": 60, "rollout": {"batch_size": 1}}
    answer = await shell(controller, body, "?wait=false")
    job_id = answer.body["job_id"]
    assert await started.lines(1) == ["r1"]
    assert (await controller.request("POST", "/fleet/pause")).status == 200
    await controller.app[FLEET_PAUSE].wait_until(lambda paused: paused is not None, 10)
    gate.rmdir()
    store = controller.app[ROLLOUT_STORE]
    entry = await until_entry(store, job_id, lambda state: "r1" in state.finished)
    renewed = await until_entry(store, job_id, lambda _: True, after=entry.revision)
    assert list(renewed.state.started) == ["r1"]
    assert starts(log) == ["r1"]
    progress = (await controller.request("GET", f"/job/{job_id}")).body["rollout"]
    assert (progress["finished"], progress["running"], progress["pending"]) == (1, 0, 5)
    assert (await controller.request("POST", "/fleet/resume")).status == 200
    job = await wait_until_ended(controller, job_id)
    assert job["state"] == "completed"
    assert starts(log) == HOSTS


async def until_entry(
    store: RolloutStore,
    job_id: str,
    condition: Callable[[RolloutState], bool],
    *,
    after: int = 0,
) -> StoredRollout:
    """The rollout's entry once a revision after ``after`` meets ``condition``
    (a bounded poll of its entry)."""
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while True:
            stored = await store.read(job_id)
            if stored is not None and stored.revision > after and condition(stored.state):
                return stored
            await asyncio.sleep(0.05)  # the poll's interval


async def test_an_idempotent_rollout_runs_once(fleet: Controller, tmp_path: Path) -> None:
    log = tmp_path / "log"
    body = {"command": logged(log, "true"), "rollout": {"batch_size": 3}}
    headers = {"Idempotency-Key": "roll-1"}
    path = f"/node/{POOL}/command/shell"
    first = await fleet.request("POST", path, json=body, headers=headers)
    again = await fleet.request("POST", path, json=body, headers=headers)
    assert first.status == again.status == 202
    assert again.body["job_id"] == first.body["job_id"]
    assert again.body["results"] == first.body["results"]
    assert started_in_order(starts(log), 3), starts(log)  # once each
    other = {**body, "rollout": {"batch_size": 2}}
    conflict = await fleet.request("POST", path, json=other, headers=headers)
    assert conflict.status == 409


async def test_cancel_all_stops_a_rollout(fleet: Controller, tmp_path: Path, started: Fifo) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    command = told_then_gated(started, gate)
    body = {"command": command, "timeout": 60, "rollout": {"batch_size": 1}}
    job_id = (await shell(fleet, body, "?wait=false")).body["job_id"]
    assert await started.lines(1) == ["r1"]
    cancelled = await fleet.request("POST", "/job/cancel-all")
    assert cancelled.status == 202
    assert cancelled.body["job_ids"] == [job_id]
    final = await wait_until_ended(fleet, job_id)
    assert [r["status"] for r in final["results"]] == ["cancelled", *["skipped"] * 5]
    assert final["state"] == "cancelled"


async def test_hosts_running_when_it_stops_finish_normally(
    fleet: Controller, tmp_path: Path, started: Fifo
) -> None:
    """batch_size 2: r1 fails while r2 runs; r2 finishes (completed), nothing else
    starts, and the progress says why while r2 still runs."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.mkdir()
    hold = (
        f'[ "$NEXEC_HOST" = r1 ] && exit 1; echo go > {started.path}; '
        f"while [ -d {gate} ]; do sleep 0.05; done"
    )
    body = {"command": logged(log, f"({hold})"), "timeout": 60, "rollout": {"batch_size": 2}}
    job_id = (await shell(fleet, body, "?wait=false")).body["job_id"]
    await started.lines(1)  # r2 runs
    mid = await until_view(fleet, job_id, lambda view: view["rollout"]["failed"] == 1)
    assert mid["state"] == "running"
    reason = "rollout stopped: 1 hosts failed (max_failures 0)"
    progress = mid["rollout"]
    assert (progress["running"], progress["stopped"]) == (1, reason)
    gate.rmdir()
    final = await wait_until_ended(fleet, job_id)
    assert [(r["status"], r["exit_code"]) for r in final["results"][:2]] == [
        ("completed", 1),
        ("completed", 0),
    ]
    assert [r["status"] for r in final["results"][2:]] == ["skipped"] * 4
    assert final["state"] == "stopped"
    assert starts(log) in (["r1", "r2"], ["r2", "r1"])


async def until_view(
    controller: Controller, job_id: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """``GET /job/{id}`` once it meets ``condition`` (a bounded poll)."""
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while True:
            view: dict[str, Any] = (await controller.request("GET", f"/job/{job_id}")).body
            if condition(view):
                return view
            await asyncio.sleep(0.05)  # the poll's interval


async def test_a_host_gone_before_its_turn_is_no_reply_after_the_delivery_timeout(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path, started: Fifo
) -> None:
    """r3's agent stops while r1 runs: when its turn comes nobody takes its job, it is
    ``no_reply`` after the delivery timeout (a failure, within max_failures 1), and the
    rollout goes on."""
    agents = {}
    for host in HOSTS:
        agents[host] = await live_agent(
            controller, host, labels={"pool": "roll"}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.mkdir()
    hold = (
        f'[ "$NEXEC_HOST" != r1 ] || {{ echo go > {started.path}; '
        f"while [ -d {gate} ]; do sleep 0.05; done; }}"
    )
    body = {
        "command": logged(log, hold), "timeout": 60, "delivery_timeout": 0.5,
        "rollout": {"batch_size": 1, "max_failures": 1},
    }  # fmt: skip
    answer = asyncio.create_task(shell(controller, body))
    await started.lines(1)
    await agents["r3"].stop()
    gate.rmdir()
    response = await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)
    by_host = {r["hostname"]: r for r in response.body["results"]}
    assert (by_host["r3"]["status"], by_host["r3"]["error"]) == (
        "no_reply",
        "not acknowledged within 0.5s",
    )
    assert [by_host[h]["status"] for h in HOSTS if h != "r3"] == ["completed"] * 5
    assert starts(log) == ["r1", "r2", "r4", "r5", "r6"]
    job = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert (job.body["state"], job.body["rollout"]["failed"]) == ("partial", 1)


async def test_a_rollout_whose_hosts_fit_one_window_runs_them_all(
    fleet: Controller, tmp_path: Path
) -> None:
    """Its deadline leaves room to start the window (the first host always starts a
    little after the job was made)."""
    log = tmp_path / "log"
    answer = await shell(fleet, {"command": logged(log), "rollout": {"batch_size": "100%"}})
    assert [r["status"] for r in answer.body["results"]] == ["completed"] * len(HOSTS)
    assert sorted(starts(log)) == HOSTS
