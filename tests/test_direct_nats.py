"""Programs that publish jobs on NATS directly, with plain nats-py and hand-written JSON,
as docs/subjects.md describes; and what the agent guarantees them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
from nats.aio.client import Client

from tests.helpers import MakeAgent, MakeController, recorded_result

# The record streams a controller makes: the agents record their results as in a fleet.
pytestmark = pytest.mark.usefixtures("record_streams")


def job(target: str, command: str, *args: str, **fields: Any) -> dict[str, Any]:
    """A job exactly as docs/subjects.md spells it."""
    timeout_s = fields.pop("timeout_s", 10)
    return {
        "type": "nexec.exec.v1.job",
        "job_id": str(uuid.uuid4()),
        "command": command,
        "args": list(args),
        "timeout_s": timeout_s,
        "deadline": time.time() + timeout_s + 3,
        "target": target,
        "caller": "direct-test",
        **fields,
    }


async def request(nc: Client, subject: str, message: dict[str, Any]) -> dict[str, Any]:
    """Publish a job with a reply inbox; return the result (after checking the ack)."""
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    await nc.publish(subject, json.dumps(message).encode(), reply=inbox)
    first = json.loads((await subscription.next_msg(timeout=10)).data)
    if first["type"] == "nexec.exec.v1.result":  # refused before it was taken: no ack
        await subscription.unsubscribe()
        return first
    assert first == {
        "type": "nexec.exec.v1.ack",
        "job_id": message["job_id"],
        "hostname": first["hostname"],
    }
    result: dict[str, Any] = json.loads((await subscription.next_msg(timeout=10)).data)
    await subscription.unsubscribe()
    return result


def results_only(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [reply for reply in replies if reply["type"] == "nexec.exec.v1.result"]


async def test_publish_to_a_host_subject_and_read_the_reply(
    nc: Client, make_agent: MakeAgent
) -> None:
    await make_agent("web1.example.com")
    message = job("web1.example.com", "echo", "direct")
    result = await request(nc, "nexec.exec.host.web1_2Eexample_2Ecom", message)
    assert result["type"] == "nexec.exec.v1.result"
    assert result["job_id"] == message["job_id"]
    assert result["hostname"] == "web1.example.com"
    assert result["status"] == "completed"
    assert result["stdout"] == "direct\n"
    assert await recorded_result(nc, message["job_id"], "web1.example.com") == result


async def test_collect_all_replies_on_an_inbox(nc: Client, make_agent: MakeAgent) -> None:
    await make_agent("h1", labels={"role": "web"})
    await make_agent("h2", labels={"role": "web"})
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    message = job("role:web", "true")
    await nc.publish("nexec.exec.label.role.web", json.dumps(message).encode(), reply=inbox)
    replies = [json.loads((await subscription.next_msg(timeout=10)).data) for _ in range(4)]
    acks = [r["hostname"] for r in replies if r["type"] == "nexec.exec.v1.ack"]
    results = results_only(replies)
    assert sorted(acks) == ["h1", "h2"]
    assert sorted(r["hostname"] for r in results) == ["h1", "h2"]
    assert {r["status"] for r in results} == {"completed"}


async def test_agents_register_in_the_registry_bucket(
    make_controller: MakeController, nc: Client, make_agent: MakeAgent
) -> None:
    await make_controller()  # controllers make the bucket; agents never do
    agent = await make_agent("hb-1.example.com", labels={"env": "dev"})
    bucket = await nc.jetstream().key_value("nexec_agents")
    entry = await bucket.get("hb-1_2Eexample_2Ecom")
    heartbeat = json.loads(entry.value or b"")
    assert heartbeat["type"] == "nexec.agent.v1.heartbeat"
    assert heartbeat["hostname"] == "hb-1.example.com"
    assert heartbeat["labels"] == {"env": "dev"}
    assert len(heartbeat["load_avg"]) == 3
    await agent.stop()
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await bucket.get("hb-1_2Eexample_2Ecom")


async def test_expired_job_is_refused_and_not_run(
    nc: Client, make_agent: MakeAgent, tmp_path: Path
) -> None:
    await make_agent("agent-1")
    marker = tmp_path / "ran"
    message = job("agent-1", "touch", str(marker), deadline=time.time() - 1)
    result = await request(nc, "nexec.exec.host.agent-1", message)
    assert result["status"] == "failed"
    assert result["changed"] is False
    assert "expired before start" in result["error"]
    assert not marker.exists()


async def test_duplicate_delivery_runs_once(
    nc: Client, make_agent: MakeAgent, tmp_path: Path
) -> None:
    agent = await make_agent("agent-1")
    log = tmp_path / "runs"
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    duplicated = job("agent-1", "sh", "-c", f"echo run >> {log}")
    for _ in range(3):  # delivered three times
        await nc.publish("nexec.exec.host.agent-1", json.dumps(duplicated).encode(), reply=inbox)
    # One subscription's messages are taken in order: once the agent has
    # acknowledged this later job, it has dealt with every copy before it.
    sentinel = job("agent-1", "true")
    await nc.publish("nexec.exec.host.agent-1", json.dumps(sentinel).encode(), reply=inbox)
    replies: list[dict[str, Any]] = []
    done = {
        ("nexec.exec.v1.ack", sentinel["job_id"]),
        ("nexec.exec.v1.result", duplicated["job_id"]),
    }
    while not done <= {(r["type"], r["job_id"]) for r in replies}:
        replies.append(json.loads((await subscription.next_msg(timeout=10)).data))
    about_duplicated = [r["type"] for r in replies if r["job_id"] == duplicated["job_id"]]
    assert about_duplicated == ["nexec.exec.v1.ack", "nexec.exec.v1.result"]
    assert log.read_text() == "run\n"
    assert agent.counters.duplicates == 2


async def test_job_for_other_labels_is_dropped(nc: Client, make_agent: MakeAgent) -> None:
    agent = await make_agent("agent-1", labels={"role": "web", "env": "dev"})
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    mismatch = job("env:prod,role:web", "true")
    match = job("env:dev,role:web", "true")
    for message in (mismatch, match):
        await nc.publish("nexec.exec.label.role.web", json.dumps(message).encode(), reply=inbox)
    replies = [json.loads((await subscription.next_msg(timeout=10)).data) for _ in range(2)]
    assert {reply["job_id"] for reply in replies} == {match["job_id"]}
    assert agent.counters.started == 1


async def test_invalid_job_gets_a_failed_reply(nc: Client, make_agent: MakeAgent) -> None:
    await make_agent("agent-1")
    reply = await nc.request(
        "nexec.exec.host.agent-1", b'{"type": "nexec.exec.v1.job"}', timeout=10
    )
    result = json.loads(reply.data)
    assert result["status"] == "failed"
    assert result["hostname"] == "agent-1"
    assert "invalid job message" in result["error"]
    assert "job_id" in result["error"]


async def test_concurrency_is_bounded(nc: Client, make_agent: MakeAgent, tmp_path: Path) -> None:
    await make_agent("agent-1", max_concurrent_jobs=1)
    log = tmp_path / "order"
    script = f"echo start >> {log}; sleep 0.2; echo end >> {log}"
    messages = [job("agent-1", "sh", "-c", script) for _ in range(3)]
    results = await asyncio.gather(
        *(request(nc, "nexec.exec.host.agent-1", message) for message in messages)
    )
    assert {r["status"] for r in results} == {"completed"}
    assert log.read_text().split() == ["start", "end"] * 3


async def test_job_without_reply_subject_runs_and_is_recorded(
    nc: Client, make_agent: MakeAgent, make_controller: MakeController
) -> None:
    await make_controller()  # creates the record streams
    await make_agent("agent-1")
    message = job("agent-1", "echo", "fire-and-forget")
    await nc.publish("nexec.exec.host.agent-1", json.dumps(message).encode())
    # Nobody hears the reply: the result is only in the results stream, which
    # an ordered consumer reads as soon as the agent has recorded it.
    recorded = await recorded_result(nc, message["job_id"], "agent-1")
    assert recorded["status"] == "completed"
    assert recorded["stdout"] == "fire-and-forget\n"


class BrokenExecutor:
    async def run(self, job: Any, timeout_s: float, stop: asyncio.Event) -> Any:
        raise RuntimeError("executor bug")


async def test_an_executor_bug_still_answers_failed(nc: Client, make_agent: MakeAgent) -> None:
    await make_agent("agent-1", executor=BrokenExecutor())
    result = await request(nc, "nexec.exec.host.agent-1", job("agent-1", "true"))
    assert result["status"] == "failed"
    assert result["error"] == "agent error: RuntimeError('executor bug')"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"job_id": ""}, "job_id"),
        ({"job_id": "x" * 129}, "job_id"),
        ({"timeout_s": -5}, "timeout_s"),
        ({"timeout_s": 10**9}, "timeout_s"),
        ({"deadline": time.time() + 10**6}, "deadline too far ahead"),
    ],
)
async def test_jobs_with_out_of_range_fields_are_refused(
    nc: Client, make_agent: MakeAgent, change: dict[str, Any], reason: str
) -> None:
    agent = await make_agent("agent-1")
    result = await request(nc, "nexec.exec.host.agent-1", {**job("agent-1", "true"), **change})
    assert result["status"] == "failed"
    assert reason in result["error"]
    assert agent.counters.started == 0
