"""Incident controls: ``POST /fleet/pause`` and ``/fleet/resume`` (held in JetStream, so
every controller follows them, also one started later), and ``POST /job/cancel-all``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import nats.js.errors
import pytest
from nats.aio.client import Client

from controller.appkeys import AUDIT, FLEET_PAUSE
from controller.errors import NatsUnavailable
from controller.keys.store import KeyStore
from nexec.cli import main as nexec_main
from schemas.api import FleetPause
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    MakeAgent,
    MakeController,
    RestartableNats,
    recorded_result,
)


async def seen_paused(controller: Controller, paused: bool) -> None:
    """Until ``controller`` follows the pause entry to ``paused`` (its watch is async)."""

    def holds(state: FleetPause | None) -> bool:
        return (state is not None) == paused

    await controller.app[FLEET_PAUSE].wait_until(holds, STARTUP_TIMEOUT_S)


async def audit_records(controller: Controller) -> list[dict[str, Any]]:
    await controller.app[AUDIT].flushed()
    response = await controller.request("GET", "/audit")
    assert response.status == 200, response.body
    records: list[dict[str, Any]] = response.body["records"]
    return records


async def test_a_pause_holds_for_every_controller_until_resumed(
    make_controller: MakeController, make_agent: MakeAgent
) -> None:
    first = await make_controller(keys={"oncall": (["fleet:admin"], [])})
    second = await make_controller()
    await make_agent("h1")
    await first.wait_for_agents("h1")
    await second.wait_for_agents("h1")
    oncall = first.extra_keys["oncall"]

    paused = await first.request("POST", "/fleet/pause", key=oncall)
    assert paused.status == 200, paused.body
    assert paused.body["paused"]["by"] == "oncall"
    since = paused.body["paused"]["since"]
    await seen_paused(second, True)
    for controller in (first, second):
        refused = await controller.exec("h1", {"command": "true"})
        assert refused.status == 503
        assert refused.body == {
            "error": "fleet paused",
            "details": "the fleet is paused by oncall",
            "code": 503,
        }
        shell = await controller.request(
            "POST", "/node/_all/command/shell?dry_run=true", json={"command": "true"}
        )
        assert (shell.status, shell.body["details"]) == (503, "the fleet is paused by oncall")
        health = await controller.request("GET", "/healthz")
        assert health.status == 200  # the controller works; it refuses exec only
        assert health.body["paused"] == {"by": "oncall", "since": since}
        status = await controller.request("GET", "/fleet")
        assert status.body == {"paused": {"by": "oncall", "since": since}}
        assert (await controller.request("GET", "/node")).status == 200

    again = await second.request("POST", "/fleet/pause")  # stays paused by the first
    assert again.body["paused"] == {"by": "oncall", "since": since}

    third = await make_controller()  # started while paused: refuses from the start
    await third.wait_for_agents("h1")
    refused = await third.exec("h1", {"command": "true"})
    assert (refused.status, refused.body["details"]) == (503, "the fleet is paused by oncall")

    resumed = await second.request("POST", "/fleet/resume")
    assert (resumed.status, resumed.body) == (200, {"paused": None})
    for controller in (first, second, third):
        await seen_paused(controller, False)
        ran = await controller.exec("h1", {"command": "true"})
        assert ran.status == 202, ran.body
        health = await controller.request("GET", "/healthz")
        assert health.body["paused"] is None

    records = await audit_records(first)
    fleet_records = [(r["path"], r["key_name"], r["status"]) for r in records
                     if r["path"].startswith("/fleet/")]  # fmt: skip
    assert fleet_records == [
        ("/fleet/resume", "admin", 200),
        ("/fleet/pause", "admin", 200),
        ("/fleet/pause", "oncall", 200),
    ]


async def test_a_pause_survives_a_nats_restart(
    tmp_path: Path, make_controller: MakeController
) -> None:
    server = RestartableNats(tmp_path / "jetstream")
    try:
        controller = await make_controller(nats_url=server.url)
        assert (await controller.request("POST", "/fleet/pause")).status == 200
        server.stop(signum=signal.SIGKILL)
        server.start_again()
        later = await make_controller(nats_url=server.url)
        refused = await later.exec("_all", {"command": "true"})
        assert (refused.status, refused.body["details"]) == (503, "the fleet is paused by admin")
        assert (await later.request("POST", "/fleet/resume")).status == 200
        await seen_paused(controller, False)  # its watch came back with the connection
        assert (await controller.exec("_all", {"command": "true"})).status == 404  # no agent
    finally:
        server.stop()


async def test_a_lost_fleet_bucket_is_made_again_still_paused(
    make_controller: MakeController, nc: Client
) -> None:
    controller = await make_controller(state_check_interval_s=0.2)
    assert (await controller.request("POST", "/fleet/pause")).status == 200
    js = nc.jetstream()
    await js.delete_stream("KV_nexec_fleet")
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while True:
            try:
                bucket = await js.key_value("nexec_fleet")
                entry = await bucket.get("pause")
                break
            except nats.js.errors.Error:  # not made again yet
                await asyncio.sleep(0.1)  # the keeper checks every 0.2 s
    assert b'"paused":true' in (entry.value or b"")
    later = await make_controller()
    refused = await later.exec("_all", {"command": "true"})
    assert (refused.status, refused.body["details"]) == (503, "the fleet is paused by admin")


async def test_a_missing_bucket_reads_as_no_news_not_as_a_resume(
    make_controller: MakeController, nc: Client
) -> None:
    """The read every restarted watch starts with (after a reconnection): nats-py
    says "key not found" for a bucket that is gone, too."""
    controller = await make_controller(state_check_interval_s=3600)  # no remake here
    assert (await controller.request("POST", "/fleet/pause")).status == 200
    await nc.jetstream().delete_stream("KV_nexec_fleet")
    state = controller.app[FLEET_PAUSE]
    with pytest.raises(NatsUnavailable):
        await state._read()
    assert state.paused is not None
    refused = await controller.exec("_all", {"command": "true"})
    assert (refused.status, refused.body["details"]) == (503, "the fleet is paused by admin")


async def test_cancel_all_cancels_every_running_job(
    make_controller: MakeController, make_agent: MakeAgent, nc: Client, started: Fifo
) -> None:
    controller = await make_controller(keys={"oncall": (["fleet:admin"], [])})
    await make_agent("c1")
    await make_agent("c2")
    await controller.wait_for_agents("c1", "c2")
    finished = await controller.exec("c1", {"command": "true"})
    assert finished.status == 202
    script = f"echo go > {started.path}; sleep 300"
    job_ids = {}
    for host in ("c1", "c2"):
        submitted = await controller.request(
            "POST", f"/node/{host}/command/exec?wait=false",
            json={"command": "sh", "args": ["-c", script], "timeout": 300},
        )  # fmt: skip
        job_ids[host] = submitted.body["job_id"]
    await started.lines(2)  # both are running

    cancelled = await controller.request(
        "POST", "/job/cancel-all", key=controller.extra_keys["oncall"]
    )
    assert cancelled.status == 202, cancelled.body
    assert sorted(cancelled.body["job_ids"]) == sorted(job_ids.values())
    assert cancelled.body["complete"] is True
    for host, job_id in job_ids.items():
        result = await recorded_result(nc, job_id, host)
        assert result["status"] == "cancelled"
        assert result["error"].startswith("cancelled on request of oncall")
    for job_id in job_ids.values():
        job = await controller.request("GET", f"/job/{job_id}")
        assert job.body["state"] == "cancelled"
    records = await audit_records(controller)
    assert (records[0]["path"], records[0]["key_name"], records[0]["status"]) == (
        "/job/cancel-all",
        "oncall",
        202,
    )
    nothing = await controller.request("POST", "/job/cancel-all")
    assert (nothing.status, nothing.body) == (202, {"job_ids": [], "complete": True})


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/fleet/pause"), ("POST", "/fleet/resume"), ("POST", "/job/cancel-all"),
])  # fmt: skip
async def test_fleet_admin_is_required(
    make_controller: MakeController, method: str, path: str
) -> None:
    others = ["command:exec", "command:shell", "job:read", "job:cancel", "node:read"]
    controller = await make_controller(
        keys={"operator": (others, []), "web-admin": (["fleet:admin"], ["role:web"])}
    )
    refused = await controller.request(method, path, key=controller.extra_keys["operator"])
    assert refused.status == 403
    assert refused.body["details"] == "key 'operator' lacks the permission 'fleet:admin'"
    if path.startswith("/fleet/"):  # the whole fleet: never a key limited to some targets
        scoped = await controller.request(method, path, key=controller.extra_keys["web-admin"])
        assert scoped.status == 403, scoped.body
        assert "needs a key without target patterns" in scoped.body["details"]
    assert controller.app[FLEET_PAUSE].paused is None
    records = await audit_records(controller)
    assert [r["status"] for r in records if r["path"] == path][-1] == 403


def test_nexec_keys_create_accepts_fleet_admin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.json"
    argv = ["keys", "create", "--keys-file", str(keys_file), "--name", "oncall"]
    assert nexec_main([*argv, "--perm", "fleet:admin"]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyStore.load(keys_file).authenticate(key).has_permission("fleet:admin")  # type: ignore[union-attr]
