"""Agents and controllers on the NATS service API (ADR-32): discovery with plain
requests on ``$SRV`` subjects, what INFO and STATS say, and the job subjects still
broadcast while the services run."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import nats.errors
import pytest
from nats.aio.client import Client
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

from agentd.agent import Agent
from runtime.service import PENDING_BYTES_LIMIT
from schemas.messages import ResultStatus
from schemas.subjects import AGENT_SERVICE, CONTROLLER_SERVICE, Subjects
from tests.helpers import (
    SERVICE_QUIET_S,
    STARTUP_TIMEOUT_S,
    Controller,
    LiveAgent,
    MakeAgent,
    MakeController,
    service_replies,
    until,
)
from tests.test_direct_nats import job, request
from tests.test_metrics import scrape, value

SRV = Subjects.service_request


def by_host(replies: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {reply["metadata"]["hostname"]: reply for reply in replies}


async def three_agents(make_agent: MakeAgent) -> list[Agent]:
    return [
        await make_agent("web1", labels={"role": "web", "env": "prod"}),
        await make_agent("web2", labels={"role": "web"}),
        await make_agent("db1.example.com", labels={"role": "db"}),
    ]


async def test_a_fleet_is_discovered_with_plain_requests(nc: Client, make_agent: MakeAgent) -> None:
    agents = await three_agents(make_agent)
    replies = await service_replies(nc, SRV("PING", AGENT_SERVICE), expected=3)
    assert len(replies) == 3  # each agent once: no queue group
    pings = [ServicePing.from_dict(reply) for reply in replies]  # nats.micro reads them
    assert {(p.name, p.id) for p in pings} == {(AGENT_SERVICE, a.instance_id) for a in agents}
    assert {reply["type"] for reply in replies} == {"io.nats.micro.v1.ping_response"}
    hosts = by_host(replies)
    assert hosts["web1"]["metadata"] == {
        "hostname": "web1",
        "labels": "env:prod,role:web",
        "version": pings[0].version,
        "subject_prefix": "nexec",
    }
    assert hosts["db1.example.com"]["metadata"]["labels"] == "role:db"
    # Without the name (every service), and with name and instance id (one agent).
    assert len(await service_replies(nc, SRV("PING"), expected=3)) == 3
    one = await service_replies(nc, SRV("PING", AGENT_SERVICE, agents[1].instance_id), expected=1)
    assert [reply["id"] for reply in one] == [agents[1].instance_id]


async def test_info_and_stats_describe_an_agent_and_count_its_jobs(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    agent = await live_agent(controller, "web1", labels={"role": "web"})
    for verb in ("INFO", "STATS"):  # every form of the subject is answered
        everyone = await service_replies(nc, SRV(verb), expected=2)  # the controller too
        assert sorted(reply["name"] for reply in everyone) == [AGENT_SERVICE, CONTROLLER_SERVICE]
        for parts in ((AGENT_SERVICE,), (AGENT_SERVICE, agent.instance_id)):
            assert len(await service_replies(nc, SRV(verb, *parts), expected=1)) == 1
    [info] = await service_replies(nc, SRV("INFO", AGENT_SERVICE), expected=1)
    parsed = ServiceInfo.from_dict(info)
    assert (parsed.name, parsed.id, info["type"]) == (
        AGENT_SERVICE, agent.instance_id, "io.nats.micro.v1.info_response",
    )  # fmt: skip
    [endpoint] = info["endpoints"]
    assert (endpoint["name"], endpoint["subject"], endpoint["queue_group"]) == (
        "jobs", "nexec.exec.>", "",
    )  # fmt: skip
    assert endpoint["metadata"]["subjects"].split(",") == [
        "nexec.exec.host.web1", "nexec.exec.label.role.web", "nexec.exec.all", "nexec.exec.any",
    ]  # fmt: skip

    ran = await controller.exec("web1", {"command": "echo", "args": ["hi"]})
    refused = await controller.request(
        "POST", "/node/web1/command/shell", json={"command": "echo no"}
    )  # the agent does not allow shell
    assert [r["status"] for r in ran.body["results"] + refused.body["results"]] == [
        "completed", "failed",
    ]  # fmt: skip
    [stats] = await service_replies(nc, SRV("STATS", AGENT_SERVICE), expected=1)
    ServiceStats.from_dict(stats)  # nats.micro reads it, ``started`` included
    [jobs] = stats["endpoints"]
    assert (jobs["name"], jobs["num_requests"], jobs["num_errors"]) == ("jobs", 2, 1)
    assert "shell" in jobs["last_error"]
    assert jobs["processing_time"] > 0
    assert jobs["average_processing_time"] == jobs["processing_time"] // 2
    assert jobs["data"] == {
        "received": 2, "started": 1, "refused": 1, "duplicates": 0, "replies_lost": 0,
        "running": 0, "records_retried": 0, "records_lost": 0,
        "completed": 1, "failed": 1, "timeout": 0, "cancelled": 0,
    }  # fmt: skip


async def test_broadcast_jobs_reach_every_agent_with_the_services_running(
    controller: Controller, make_agent: MakeAgent, nc: Client
) -> None:
    await three_agents(make_agent)
    await controller.wait_for_agents("web1", "web2", "db1.example.com")
    assert len(await service_replies(nc, SRV("PING", AGENT_SERVICE), expected=3)) == 3
    everyone = await controller.exec("_all", {"command": "true"})
    assert [(r["hostname"], r["status"]) for r in everyone.body["results"]] == [
        ("db1.example.com", "completed"), ("web1", "completed"), ("web2", "completed"),
    ]  # fmt: skip
    web = await controller.exec("role:web", {"command": "true"})
    assert [r["hostname"] for r in web.body["results"]] == ["web1", "web2"]
    assert {r["status"] for r in web.body["results"]} == {"completed"}
    stats = by_host(await service_replies(nc, SRV("STATS", AGENT_SERVICE), expected=3))
    received = {host: reply["endpoints"][0]["data"]["received"] for host, reply in stats.items()}
    assert received == {"web1": 2, "web2": 2, "db1.example.com": 1}


async def test_every_controller_answers_as_nexec_controller(
    controller: Controller, make_controller: Any, live_agent: LiveAgent, nc: Client
) -> None:
    second = await make_controller()
    await live_agent(controller, "web1")
    await second.wait_for_agents("web1")
    pings = await service_replies(nc, SRV("PING", CONTROLLER_SERVICE), expected=2)
    assert len({reply["id"] for reply in pings}) == 2  # both, no queue group
    listens = {reply["metadata"]["listen"] for reply in pings}
    assert listens == {"127.0.0.1:0"}
    everything = await service_replies(nc, SRV("PING"), expected=3)
    names = sorted(reply["name"] for reply in everything)
    assert names == [AGENT_SERVICE, CONTROLLER_SERVICE, CONTROLLER_SERVICE]

    ran = await controller.exec("web1", {"command": "true"})
    assert ran.status == 202
    timed_out = await controller.exec("web1", {"command": "sleep", "args": ["5"], "timeout": 1})
    assert timed_out.body["results"][0]["status"] == "timeout"
    stats = await service_replies(nc, SRV("STATS", CONTROLLER_SERVICE), expected=2)
    [mine] = [s for s in stats if s["endpoints"][0]["data"]["collected"]]
    ServiceStats.from_dict(mine)
    [jobs] = mine["endpoints"]
    assert (jobs["name"], jobs["num_requests"], jobs["num_errors"]) == ("jobs", 2, 0)
    assert jobs["average_processing_time"] == jobs["processing_time"] // 2 > 0
    data = jobs["data"]
    assert (data["hosts_completed"], data["hosts_timeout"], data["agents_live"]) == (1, 1, 1)
    assert (data["hosts_no_reply"], data["collecting"], data["publish_failures"]) == (0, 0, 0)


@pytest.mark.parametrize(
    "reply",
    ["nexec.audit", "nexec.exec.all", "$JS.API.STREAM.PURGE.nexec_results", "$KV.nexec_registry.x"],
)
async def test_an_answer_never_goes_to_a_nexec_subject(
    make_agent: MakeAgent, nc: Client, reply: str
) -> None:
    """A requester that names one of nexec's subjects, or a JetStream or KV API subject,
    as its "reply" gets no answer there (and the request is counted refused)."""
    agent = await make_agent("web1")
    leaked: asyncio.Queue[str] = asyncio.Queue()

    async def on_leak(msg: Any) -> None:
        await leaked.put(msg.subject)

    await nc.subscribe(reply, cb=on_leak)
    await nc.publish(SRV("PING", AGENT_SERVICE), b"", reply=reply)
    # Answered in order on one subscription: once the next request's answer is here,
    # the first one would have been too.
    own = SRV("PING", AGENT_SERVICE, agent.instance_id)
    assert len(await service_replies(nc, own, expected=1)) == 1
    await nc.flush()
    assert leaked.empty()
    assert (agent.service.refused, agent.service.answered) == (1, 1)


async def test_a_stopped_agent_no_longer_answers(make_agent: MakeAgent, nc: Client) -> None:
    """Its stop drains the discovery subscriptions (ADR-32): nobody answers after it."""
    agent = await make_agent("web1")
    own = SRV("PING", AGENT_SERVICE, agent.instance_id)
    assert len(await service_replies(nc, own, expected=1)) == 1
    await agent.stop()
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request(own, b"", timeout=STARTUP_TIMEOUT_S)


ROLLOUT_SKIPPING = {"command": "false", "rollout": {"batch_size": 1}}
"""A rollout of three hosts stopped by its first failure: completed, skipped, skipped."""


async def controller_stats_data(nc: Client) -> dict[str, Any]:
    [stats] = await service_replies(nc, SRV("STATS", CONTROLLER_SERVICE), expected=1)
    data: dict[str, Any] = stats["endpoints"][0]["data"]
    return data


@pytest.mark.parametrize("metrics_enabled", [True, False])
async def test_stats_count_every_host_outcome_as_the_metrics_do(
    make_controller: MakeController, live_agent: LiveAgent, nc: Client, metrics_enabled: bool
) -> None:
    """One count of host outcomes: ``$SRV.STATS`` says what ``/metrics`` says, a
    rollout's skipped hosts included, and still counts with metrics off."""
    controller = await make_controller(metrics_enabled=metrics_enabled)
    for host in ("m1", "m2", "m3"):
        await live_agent(controller, host, labels={"pool": "m"}, allow_shell=True)
    rollout = await controller.request("POST", "/node/pool:m/command/shell", json=ROLLOUT_SKIPPING)
    plain = await controller.exec("m1", {"command": "true"})
    assert (rollout.status, plain.status) == (202, 202), (rollout.body, plain.body)
    assert [r["status"] for r in rollout.body["results"]] == ["completed", "skipped", "skipped"]

    data = await controller_stats_data(nc)
    hosts = {status.value: data[f"hosts_{status.value}"] for status in ResultStatus}
    assert hosts == {**dict.fromkeys(hosts, 0), "completed": 2, "skipped": 2}
    if metrics_enabled:
        series = await scrape(controller.url)
        results = "nexec_host_results_total"
        assert {status: value(series, results, status=status) for status in hosts} == hosts


FLOOD = 100


async def test_a_discovery_flood_gets_at_most_the_burst_of_answers(
    make_agent: MakeAgent, nc: Client
) -> None:
    """A client flooding ``$SRV`` requests (any NATS user that may ask, or an agent's
    neighbour) gets the answers of the rate limit, not one per request: each answer
    may go to a reply subject of the requester's choosing, once per instance."""
    agent = await make_agent("web1", service_answers_per_s=0.001, service_answers_burst=5)
    inbox = nc.new_inbox()
    answers = await nc.subscribe(inbox)
    own = SRV("PING", AGENT_SERVICE, agent.instance_id)
    for _ in range(FLOOD):
        await nc.publish(own, b"", reply=inbox)
    await nc.flush()
    responder = agent.service
    await until(lambda: responder.answered + responder.refused == FLOOD)
    assert (responder.answered, responder.refused) == (5, FLOOD - 5)
    for _ in range(5):
        await answers.next_msg(timeout=STARTUP_TIMEOUT_S)
    with pytest.raises(nats.errors.TimeoutError):  # a bound on a wait for nothing
        await answers.next_msg(timeout=SERVICE_QUIET_S)


async def test_large_discovery_requests_are_dropped_and_logged_in_a_few_lines(
    make_agent: MakeAgent, nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A discovery request has no body: one larger than the ``$SRV`` subscription holds
    is dropped by NATS (a slow consumer) before it is held or answered, and a flood
    of them is a few log lines (the 1st, 10th, 100th... drop), not one per message."""
    agent = await make_agent("web1")
    own = SRV("PING", AGENT_SERVICE, agent.instance_id)
    large = b"x" * (PENDING_BYTES_LIMIT + 1)
    with caplog.at_level(logging.WARNING):
        for _ in range(FLOOD):
            await nc.publish(own, large, reply=nc.new_inbox())
        await nc.flush()
        await until(lambda: agent.nats_errors.slow_consumer_drops == FLOOD)
    assert agent.service.answered == 0
    slow = [r for r in caplog.records if "slow consumer" in r.getMessage()]
    assert [record.args[-1] for record in slow if isinstance(record.args, tuple)] == [1, 10, 100]


DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def documented_stats_data() -> tuple[set[str], set[str]]:
    """The names docs/operations.md lists in the ``data`` row of the STATS table: the
    agent's, the controller's (the metric it names aside)."""
    (row,) = [line for line in DOCS.read_text().splitlines() if line.startswith("| `data` |")]
    _, agent, controller = row.split(" | ")
    names = [set(re.findall(r"`([a-z_]+)`", column)) for column in (agent, controller)]
    return names[0], names[1] - {"nexec_host_results_total"}


async def test_every_stats_counter_is_where_the_docs_say(
    controller: Controller,
    make_agent: MakeAgent,
    nc: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each STATS ``data`` counter is in docs/operations.md's table, and each counter of
    the agent's shutdown summary is in its STATS too; a job refused at intake is
    counted refused, failed and in ``num_errors``."""
    caplog.set_level(logging.INFO)
    agent = await make_agent("web1")
    await controller.wait_for_agents("web1")
    subject = Subjects().exec_host("web1")
    assert (await request(nc, subject, job("web1", "true")))["status"] == "completed"
    refused = await request(nc, subject, job("web1", "true", deadline=10**10))
    assert refused["error"] == "invalid job: deadline too far ahead"
    [stats] = await service_replies(nc, SRV("STATS", AGENT_SERVICE), expected=1)
    [jobs] = stats["endpoints"]
    data = jobs["data"]
    assert (jobs["num_requests"], jobs["num_errors"]) == (2, 1)
    assert (data["refused"], data["failed"], data["completed"]) == (1, 1, 1)

    agent_documented, controller_documented = documented_stats_data()
    assert set(data) == agent_documented
    assert set(await controller_stats_data(nc)) == controller_documented
    await agent.stop()
    (summary,) = [r.getMessage() for r in caplog.records if "nexec-agentd stopped" in r.message]
    counters = set(re.findall(r"(\w+)=", summary)) - {"hostname"}
    assert counters <= set(data), counters - set(data)
