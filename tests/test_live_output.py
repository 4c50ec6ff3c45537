"""GET /job/{id}/output: live chunks, results and the end, for late and resuming clients."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from controller.appkeys import JOB_STORE
from schemas.messages import ExecJob, JobRecord, OutputChunk
from schemas.subjects import Subjects
from tests.helpers import Controller, Fifo, LiveAgent


async def read_events(controller: Controller, job_id: str, **headers: str) -> list[dict[str, Any]]:
    """Parse the SSE stream until it ends."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output",
        headers={"Authorization": f"Bearer {controller.api_key}", **headers},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif not line and current:
                events.append(current)
                current = {}
    return events


def stdout_of(events: list[dict[str, Any]], host: str) -> str:
    chunks = [e["data"] for e in events if e["event"] == "output" and e["data"]["hostname"] == host]
    return "".join(c["data"] for c in chunks if c["stream"] == "stdout")


@pytest.fixture
async def gated_job(
    controller: Controller, live_agent: LiveAgent, started: Fifo, tmp_path: Path
) -> tuple[str, Path]:
    """A job on three agents that printed "first" and waits for the gate to go."""
    for host in ("o1", "o2", "o3"):
        await live_agent(controller, host, labels={"pool": "out"})
    gate = tmp_path / "gate"
    gate.mkdir()
    script = (
        f"echo first; echo go > {started.path}; while [ -d {gate} ]; do sleep 0.05; done; "
        "echo last; echo oops >&2"
    )
    submitted = await controller.request(
        "POST", "/node/pool:out/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script]},
    )  # fmt: skip
    await started.lines(3)
    return submitted.body["job_id"], gate


async def test_a_client_connecting_after_the_start_sees_everything(
    controller: Controller, gated_job: tuple[str, Path]
) -> None:
    job_id, gate = gated_job
    reading = asyncio.ensure_future(read_events(controller, job_id))
    gate.rmdir()
    events = await reading
    for host in ("o1", "o2", "o3"):
        assert stdout_of(events, host) == "first\nlast\n"
    results = [e["data"] for e in events if e["event"] == "result"]
    assert sorted(r["hostname"] for r in results) == ["o1", "o2", "o3"]
    assert {r["status"] for r in results} == {"completed"}
    assert events[-1] == {"event": "end", "data": {"job_id": job_id, "state": "completed"}}
    stderr = [
        e["data"]["data"]
        for e in events
        if e["event"] == "output" and e["data"]["stream"] == "stderr"
    ]
    assert stderr == ["oops\n"] * 3

    # After the end: a new client gets the same recorded events at once,
    # and one resuming after the first event gets the rest.
    replay = await read_events(controller, job_id)
    assert replay == events
    resumed = await read_events(controller, job_id, **{"Last-Event-ID": str(events[0]["id"])})
    assert resumed == events[1:]


async def test_ndjson_carries_the_same_events(
    controller: Controller, gated_job: tuple[str, Path]
) -> None:
    job_id, gate = gated_job
    gate.rmdir()
    sse = await read_events(controller, job_id)
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output",
        headers={"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"},
    ) as response:
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in (await response.text()).splitlines()]
    as_sse = [
        {key: value for key, value in line.items() if not (key == "id" and value is None)}
        for line in lines
    ]
    assert as_sse == sse


async def test_output_of_an_unknown_job_is_404(controller: Controller) -> None:
    response = await controller.request("GET", "/job/nope/output")
    assert response.status == 404


LOST = "agent lost while running; not heard from for 1s"


async def recorded_job(nc: Client, deadline_in_s: float, no_replies: dict[str, str]) -> str:
    """A job on h1 recorded as the controller records it, whose host never answers."""
    job_id = str(uuid.uuid4())
    job = ExecJob(job_id=job_id, command="true", deadline=time.time() + deadline_in_s, target="h1")
    record = JobRecord(job=job, expected_hosts=["h1"], no_replies=no_replies)
    await nc.jetstream().publish(Subjects().job_record(job_id), msgspec.json.encode(record))
    return job_id


async def test_a_verdict_recorded_without_its_host_result_ends_the_stream_with_it(
    controller: Controller, nc: Client
) -> None:
    """The controller gave h1 up and recorded that in the job record, but the write of
    h1's own ``no_reply`` result failed: live output tells the verdict, not the deadline."""
    job_id = await recorded_job(nc, 0.5, {"h1": LOST})
    events = await read_events(controller, job_id)
    results = [(e["data"]["status"], e["data"]["error"]) for e in events if e["event"] == "result"]
    assert results == [("no_reply", LOST)]
    assert events[-1]["event"] == "end" and events[-1]["data"]["state"] == "failed", events


async def test_a_verdict_recorded_while_the_stream_runs_ends_it_with_the_verdict(
    controller: Controller, nc: Client
) -> None:
    job_id = await recorded_job(nc, 3.0, {})
    chunk = OutputChunk(job_id=job_id, hostname="h1", stream="stdout", offset=0, data="first\n")
    await nc.jetstream().publish(Subjects().output_record(job_id, "h1"), msgspec.json.encode(chunk))
    headers = {"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"}
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output", headers=headers
    ) as response:
        first = json.loads(await response.content.readline())
        assert first["event"] == "output"  # the stream has read the record: it runs
        record = await controller.app[JOB_STORE].load(job_id)
        assert record is not None
        marked = msgspec.structs.replace(record, no_replies={"h1": LOST})
        await nc.jetstream().publish(Subjects().job_record(job_id), msgspec.json.encode(marked))
        events = [json.loads(line) for line in (await response.text()).splitlines() if line]
    results = [(e["data"]["status"], e["data"]["error"]) for e in events if e["event"] == "result"]
    assert results == [("no_reply", LOST)]
    assert events[-1]["event"] == "end", events
