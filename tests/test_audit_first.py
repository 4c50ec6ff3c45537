"""Audit before action: a request that acts is in the audit trail, acknowledged, before
it acts; if the record cannot be stored, nothing happens (503); if the action fails
after it, a second record says so; a job recorded but never published says so."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from controller.appkeys import AUDIT
from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from schemas.subjects import Subjects
from tests.helpers import (
    Controller,
    Fifo,
    LiveAgent,
    MakeAgent,
    MakeController,
    NatsServer,
    recorded_result,
)
from tests.test_live_output import read_events
from tests.test_lost_writes import running_without

SUBJECTS = Subjects("nexec")
BOUND_S = 20.0


def blocking_command(started: Fifo, gate: Path) -> dict[str, Any]:
    """Says it started on ``started``, then waits for a line on the ``gate`` FIFO."""
    return {"command": "sh", "args": ["-c", f"echo go > {started.path}; read x < {gate}"]}


def open_gate(gate: Path) -> None:
    """Let the blocking command end (its shell holds the FIFO open for reading)."""
    fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


async def stored_audit_records(nc: Client) -> list[dict[str, Any]]:
    """Every record in the audit stream, oldest first, read from JetStream directly."""
    js = nc.jetstream()
    info = await js.stream_info(SUBJECTS.audit_stream())
    records: list[dict[str, Any]] = []
    if info.state.messages == 0:
        return records
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        records.append(json.loads((await js.get_msg(SUBJECTS.audit_stream(), seq)).data))
    return records


def start_controller(nats_server: NatsServer, keys_file: Path) -> tuple[ManagedProcess, int]:
    """A controller process that sees agent ``k1``; returns it and its HTTP port."""
    process = ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_server.url,
         "--listen", "127.0.0.1:0", "--keys-file", str(keys_file)],
        name="controller",
    )  # fmt: skip
    ready = process.wait_for_line(CONTROLLER_READY_RE, 30)
    process.wait_for_line(re.compile("agent joined: k1"), 30)
    return process, int(ready["port"])


async def test_an_exec_is_audited_before_it_runs_even_if_the_controller_dies(
    nats_server: NatsServer,
    nc: Client,
    make_agent: MakeAgent,
    started: Fifo,
    tmp_path: Path,
) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    await make_agent("k1")
    controller, port = await asyncio.to_thread(start_controller, nats_server, keys_file)
    try:
        url = f"http://127.0.0.1:{port}/node/k1/command/exec"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
            body = blocking_command(started, gate)
            in_flight = asyncio.ensure_future(session.post(url, json=body))
            await started.lines(1)  # the command runs; the controller has not answered
            controller.popen.send_signal(signal.SIGKILL)
            await asyncio.to_thread(controller.popen.wait, BOUND_S)
            with pytest.raises(aiohttp.ClientError):
                await in_flight
    finally:
        await asyncio.to_thread(controller.stop)

    [record] = await stored_audit_records(nc)
    assert (record["method"], record["path"], record["key_name"]) == (
        "POST",
        "/node/k1/command/exec",
        "ops",
    )
    assert (record["status"], record["outcome"]) == (202, "accepted")
    assert (record["command"], record["args"]) == (body["command"], body["args"])
    job = await nc.jetstream().get_last_msg(
        SUBJECTS.jobs_stream(), SUBJECTS.job_record(record["job_id"])
    )
    assert json.loads(job.data)["job"]["command"] == "sh"  # the job that ran
    open_gate(gate)


async def test_a_job_record_not_stored_after_the_audit_record_gets_a_second_record(
    nc: Client, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller, agent = await running_without(
        SUBJECTS.jobs_stream(), nc, make_controller, live_agent
    )

    response = await controller.exec("a1", {"command": "true"})
    await controller.app[AUDIT].flushed()

    assert response.status == 503, response.body
    assert agent.counters.received == 0
    failed, accepted = (await controller.request("GET", "/audit")).body["records"]
    assert (accepted["status"], accepted["outcome"]) == (202, "accepted")
    assert (failed["status"], failed["outcome"]) == (503, "NATS unavailable")
    assert accepted["job_id"] and failed["job_id"] == accepted["job_id"]


async def test_a_job_not_published_is_shown_as_not_published(
    nc: Client, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    # The audit record fails, the job record (written at the same time) is stored:
    # the job is never published, and its record says so.
    controller, agent = await running_without(
        SUBJECTS.audit_stream(), nc, make_controller, live_agent
    )

    response = await controller.exec("a1", {"command": "true", "timeout": 1})

    assert response.status == 503, response.body
    assert agent.counters.received == 0
    [summary] = (await controller.request("GET", "/job")).body["jobs"]
    view = await controller.request("GET", f"/job/{summary['job_id']}")
    assert view.status == 200, view.body
    assert (view.body["state"], view.body["complete"], view.body["results"]) == (
        "not_published",
        True,
        [],
    )
    cancel = await controller.request("POST", f"/job/{summary['job_id']}/cancel")
    assert cancel.status == 409, cancel.body
    events = await read_events(controller, summary["job_id"])
    assert events == [
        {"event": "end", "data": {"job_id": summary["job_id"], "state": "not_published"}}
    ]


async def test_a_cancel_whose_audit_record_cannot_be_stored_is_503_and_not_sent(
    nc: Client, controller: Controller, live_agent: LiveAgent, started: Fifo, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    await live_agent(controller, "a1")
    running = await controller.request(
        "POST", "/node/a1/command/exec?wait=false", json=blocking_command(started, gate)
    )
    job_id = running.body["job_id"]
    await started.lines(1)
    await controller.app[AUDIT].flushed()
    await nc.jetstream().delete_stream(SUBJECTS.audit_stream())

    cancel = await controller.request("POST", f"/job/{job_id}/cancel")

    assert cancel.status == 503, cancel.body
    assert "recording the audit record failed" in cancel.body["details"]
    open_gate(gate)
    assert (await recorded_result(nc, job_id, "a1"))["status"] == "completed"


async def test_a_delete_whose_audit_record_cannot_be_stored_is_503_and_keeps_the_job(
    nc: Client, controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "a1")
    job_id = (await controller.exec("a1", {"command": "true"})).body["job_id"]
    await controller.app[AUDIT].flushed()
    await nc.jetstream().delete_stream(SUBJECTS.audit_stream())

    deleted = await controller.request("DELETE", f"/job/{job_id}")

    assert deleted.status == 503, deleted.body
    assert (await controller.request("GET", f"/job/{job_id}")).status == 200


async def test_a_delete_that_fails_after_its_audit_record_gets_a_second_record(
    nc: Client, controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "a1")
    job_id = (await controller.exec("a1", {"command": "true"})).body["job_id"]
    await nc.jetstream().delete_stream(SUBJECTS.results_stream())  # purging its results fails

    deleted = await controller.request("DELETE", f"/job/{job_id}")
    await controller.app[AUDIT].flushed()

    assert deleted.status == 503, deleted.body
    failed, accepted = (await controller.request("GET", "/audit?limit=2")).body["records"]
    assert (accepted["method"], accepted["status"], accepted["outcome"]) == (
        "DELETE",
        204,
        "accepted",
    )
    assert (failed["method"], failed["status"], failed["outcome"]) == (
        "DELETE",
        503,
        "NATS unavailable",
    )
    assert failed["job_id"] == accepted["job_id"] == job_id
