"""Rollouts, the promises of issue 14 checked last (docs/jobs.md, "Rollouts"): the record
and the idempotency key kept ``job_retention_s`` after the end, the ``Retry-After`` of a
key out of host slots, ``max_hosts`` in the progress, ``pause_s`` across a takeover, a
fleet pause longer than the rollout's slack, and the answer's cap. Real NATS, real
controllers and agents."""

from __future__ import annotations

import asyncio
import math
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import nats.js.errors
import pytest

from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import CONFIG, FLEET_PAUSE, NATS_LINK, ROLLOUT_STORE, ROLLOUTS
from controller.jobs.idempotency import entry_key
from controller.keys.store import PERMISSIONS, create_key
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgent,
    MakeController,
    NatsServer,
    told_then_gated,
)
from tests.test_live_output import read_events
from tests.test_max_hosts import limited_key
from tests.test_rollout import HOSTS, POOL, logged, starts, until_entry, wait_until_ended
from tests.test_rollout_takeover import LEASE_S, start_driver

PAIR = "pair:yes"


async def join(controller: Controller, live_agent: LiveAgent, hosts: list[str], label: str) -> None:
    """Agents ``hosts`` labelled ``label`` (``key:value``), each with ``$NEXEC_HOST``."""
    key, value = label.split(":")
    for host in hosts:
        await live_agent(
            controller, host, labels={key: value}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Return once ``condition`` holds (a bounded poll).

    Raises:
        TimeoutError: it did not within ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.1)  # the poll's interval


async def clock_passes(at: float) -> None:
    """Return once the wall clock is past ``at`` (the behaviour tested is time itself)."""

    async def passed() -> bool:
        return time.time() > at

    await until(passed, max(0.0, at - time.time()) + STARTUP_TIMEOUT_S)


async def idempotency_revision(controller: Controller, name: str, key: str) -> int:
    """The revision of the idempotency entry of (key name, ``Idempotency-Key``), read
    through ``controller``'s NATS connection; 0: none."""
    js = controller.app[NATS_LINK].client.jetstream()
    bucket = await js.key_value(controller.app[CONFIG].subjects.idempotency_bucket())
    try:
        entry = await bucket.get(entry_key(name, key))
    except nats.js.errors.KeyNotFoundError:
        return 0
    return entry.revision or 0


RETENTION_S = 14.0
PAUSE_S = 6.0


async def test_a_rollout_s_record_and_idempotency_key_last_the_retention_from_its_end(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    """r2 starts ``pause_s`` after r1, so the rollout ends about 6 s after it began: past
    (start + retention) its record, results and key are still there, and they go after
    (end + retention)."""
    controller = await make_controller(job_retention_s=RETENTION_S, delivery_margin_s=0.5)
    await join(controller, live_agent, ["r1", "r2"], PAIR)
    body = {"command": "true", "timeout": 1, "rollout": {"batch_size": 2, "pause_s": PAUSE_S}}
    path = f"/node/{PAIR}/command/shell"
    answer = await controller.request("POST", path, json=body, headers={"Idempotency-Key": "k1"})
    assert answer.status == 202 and answer.body["complete"] is True, answer.body
    ended, job_id = time.time(), answer.body["job_id"]
    begun = (await controller.request("GET", f"/job/{job_id}")).body["created_at"]
    assert ended - begun > PAUSE_S
    events = [event["event"] for event in await read_events(controller, job_id)]
    assert events == ["result", "result", "end"]  # the results written again are not repeated

    await clock_passes(begun + RETENTION_S + PAUSE_S / 2)
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.status == 200, job.body
    assert job.body["state"] == "completed"
    assert [r["status"] for r in job.body["results"]] == ["completed"] * 2, job.body
    assert await idempotency_revision(controller, "admin", "k1") > 0

    async def gone() -> bool:
        job = await controller.request("GET", f"/job/{job_id}")
        return job.status == 404 and not await idempotency_revision(controller, "admin", "k1")

    await until(gone, ended + RETENTION_S - time.time() + STARTUP_TIMEOUT_S)


async def test_after_a_takeover_the_first_host_waits_pause_s_and_the_end_is_kept(
    nats_server: NatsServer,
    make_controller: MakeController,
    live_agent: LiveAgent,
    started: Fifo,
    tmp_path: Path,
) -> None:
    """batch_size 2 and a long pause: the killed driver started r1 only; the controller
    that takes over renews its lease twice without starting r2 (the pause counts from
    r1's start). Cancelled then, the rollout ends under it, which writes the record and
    the idempotency entry again (their retention counts from the end)."""
    second = await make_controller(rollout_lease_s=LEASE_S)
    await join(second, live_agent, HOSTS, POOL)
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.mkdir()
    wait = told_then_gated(started, gate)
    body = {"command": logged(log, wait), "timeout": 60,
            "rollout": {"batch_size": 2, "pause_s": 600}}  # fmt: skip
    driver, port = await asyncio.to_thread(start_driver, nats_server, keys_file)
    try:
        url = f"http://127.0.0.1:{port}/node/{POOL}/command/shell?wait=false"
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "k2"}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(url, json=body) as response,
        ):
            assert response.status == 202, await response.text()
            job_id = (await response.json())["job_id"]
        assert await started.lines(1) == ["r1"]
        driver.popen.send_signal(signal.SIGKILL)
        await asyncio.to_thread(driver.popen.wait, STARTUP_TIMEOUT_S)
    finally:
        await asyncio.to_thread(driver.stop)
    claimed = await idempotency_revision(second, "ops", key="k2")
    assert claimed > 0

    await asyncio.wait_for(second.app[ROLLOUTS].took_over.wait(), STARTUP_TIMEOUT_S)
    store = second.app[ROLLOUT_STORE]
    taken = await until_entry(store, job_id, lambda state: state.driver != "")
    renewed = await until_entry(store, job_id, lambda _: True, after=taken.revision)
    again = await until_entry(store, job_id, lambda _: True, after=renewed.revision)
    assert list(again.state.started) == ["r1"]  # r2 waits for the pause, after the takeover too

    assert (await second.request("POST", f"/job/{job_id}/cancel")).status == 202
    job = await wait_until_ended(second, job_id)
    assert [r["status"] for r in job["results"]] == ["cancelled", *["skipped"] * 5], job
    assert starts(log) == ["r1"]
    assert await idempotency_revision(second, "ops", key="k2") > claimed


async def test_a_key_out_of_host_slots_gets_retry_after_when_one_comes_free(
    controller: Controller, live_agent: LiveAgent, started: Fifo, tmp_path: Path
) -> None:
    """Both of the key's slots are held by a job whose deadline is about 20 s away: a
    plain request gets ``429`` with ``Retry-After`` the seconds until that deadline."""
    await join(controller, live_agent, ["r1", "r2"], PAIR)
    key = limited_key(tmp_path / "keys.json", controller)
    gate = tmp_path / "gate"
    gate.mkdir()
    hold = told_then_gated(started, gate)
    path = f"/node/{PAIR}/command/shell?wait=false"
    holding = await controller.request("POST", path, json={"command": hold, "timeout": 20}, key=key)
    assert holding.status == 202, holding.body
    await started.lines(2)
    deadline = (await controller.request("GET", f"/job/{holding.body['job_id']}")).body["deadline"]
    async with controller.session.post(
        f"{controller.url}/node/r1/command/exec",
        json={"command": "true"},
        headers={"Authorization": f"Bearer {key}"},
    ) as response:
        assert response.status == 429, await response.text()
        retry_after = int(response.headers["Retry-After"])
        asked_at = time.time()
    assert math.ceil(deadline - asked_at) - 1 <= retry_after <= math.ceil(deadline - asked_at) + 1
    gate.rmdir()
    await wait_until_ended(controller, holding.body["job_id"])


async def test_a_rollout_s_progress_shows_the_key_s_max_hosts(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await join(controller, live_agent, ["r1", "r2"], PAIR)
    key = limited_key(tmp_path / "keys.json", controller)
    path = f"/node/{PAIR}/command/shell"
    body = {"command": "true", "rollout": {"batch_size": 1}}
    for used, max_hosts in ((key, 2), (None, None)):
        answer = await controller.request("POST", path, json=body, key=used)
        assert answer.status == 202, answer.body
        job = await controller.request("GET", f"/job/{answer.body['job_id']}")
        assert job.body["rollout"]["max_hosts"] == max_hosts, job.body


async def test_a_fleet_pause_longer_than_the_slack_stops_the_rollout_out_of_time(
    make_controller: MakeController, live_agent: LiveAgent, started: Fifo, tmp_path: Path
) -> None:
    """Paused while r1 runs and never resumed: r2 cannot start before its deadline
    would pass the rollout's, so the rollout ends then, ``stopped``, r2 ``skipped``."""
    controller = await make_controller(delivery_margin_s=0.5)
    await join(controller, live_agent, ["r1", "r2"], PAIR)
    gate = tmp_path / "gate"
    gate.mkdir()
    hold = told_then_gated(started, gate)
    body = {"command": hold, "timeout": 3, "rollout": {"batch_size": 1}}
    path = f"/node/{PAIR}/command/shell?wait=false"
    job_id = (await controller.request("POST", path, json=body)).body["job_id"]
    assert await started.lines(1) == ["r1"]
    assert (await controller.request("POST", "/fleet/pause")).status == 200
    await controller.app[FLEET_PAUSE].wait_until(lambda paused: paused is not None, 10)
    gate.rmdir()

    async def ended() -> bool:
        stored = await controller.app[ROLLOUT_STORE].read(job_id)
        return stored is not None and stored.state.ended

    await until(ended, 2 * STARTUP_TIMEOUT_S)  # the rollout's worst case is 17 s
    job = (await controller.request("GET", f"/job/{job_id}")).body
    assert [r["status"] for r in job["results"]] == ["completed", "skipped"], job
    assert job["results"][1]["error"].startswith("rollout stopped: out of time"), job
    assert job["state"] == "stopped"


@pytest.mark.parametrize("answer_s", [0.5])
async def test_the_answer_comes_after_rollout_answer_s_and_the_rollout_goes_on(
    make_controller: MakeController,
    live_agent: LiveAgent,
    started: Fifo,
    tmp_path: Path,
    answer_s: float,
) -> None:
    controller = await make_controller(rollout_answer_s=answer_s)
    await join(controller, live_agent, ["r1", "r2"], PAIR)
    gate = tmp_path / "gate"
    gate.mkdir()
    hold = told_then_gated(started, gate)
    body = {"command": hold, "timeout": 60, "rollout": {"batch_size": 1}}
    answer = await controller.request("POST", f"/node/{PAIR}/command/shell", json=body)
    assert answer.status == 202, answer.body
    assert answer.body["complete"] is False
    assert await started.lines(1) == ["r1"]  # it goes on
    gate.rmdir()
    job: dict[str, Any] = await wait_until_ended(controller, answer.body["job_id"])
    assert [r["status"] for r in job["results"]] == ["completed"] * 2, job
