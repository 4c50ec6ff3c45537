"""Targets: one host (FQDNs too), _any, _all, one label, several labels; and collection."""

from __future__ import annotations

import asyncio
import collections
import os
import signal

import pytest

from tests.helpers import Controller, LiveAgent, LiveAgentProcess

FLEET = {
    "web1.example.com": {"role": "web", "env": "prod"},
    "web2.example.com": {"role": "web", "env": "dev"},
    "db1.example.com": {"role": "db", "env": "prod"},
}


@pytest.fixture
async def fleet(controller: Controller, live_agent: LiveAgent) -> Controller:
    for hostname, labels in FLEET.items():
        await live_agent(controller, hostname, labels=labels)
    return controller


def hostnames(body: dict[str, object]) -> list[str]:
    return [result["hostname"] for result in body["results"]]


async def test_one_fqdn_host(fleet: Controller) -> None:
    response = await fleet.exec("web2.example.com", {"command": "echo", "args": ["x"]})
    assert response.status == 202
    assert hostnames(response.body) == ["web2.example.com"]
    assert response.body["results"][0]["status"] == "completed"


async def test_fqdn_does_not_collide_with_a_similar_name(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "a.b", labels={})
    await live_agent(controller, "a_2Eb", labels={})
    await live_agent(controller, "a-b", labels={})
    for hostname in ("a.b", "a_2Eb", "a-b"):
        response = await controller.exec(hostname, {"command": "true"})
        assert hostnames(response.body) == [hostname]


async def test_all_reaches_every_agent_sorted_by_hostname(fleet: Controller) -> None:
    response = await fleet.exec("_all", {"command": "true"})
    assert response.status == 202
    assert hostnames(response.body) == sorted(FLEET)
    assert {r["status"] for r in response.body["results"]} == {"completed"}


async def test_all_returns_when_everyone_answered_not_at_the_timeout(fleet: Controller) -> None:
    # With a 300 s timeout, waiting for the deadline would trip the test's own
    # 60 s timeout: the answer must come as soon as all three replied.
    response = await fleet.exec("_all", {"command": "true", "timeout": 300})
    assert hostnames(response.body) == sorted(FLEET)


async def test_one_label(fleet: Controller) -> None:
    response = await fleet.exec("role:web", {"command": "true"})
    assert hostnames(response.body) == ["web1.example.com", "web2.example.com"]


async def test_several_labels_must_all_match(fleet: Controller) -> None:
    response = await fleet.exec("role:web,env:prod", {"command": "true"})
    assert hostnames(response.body) == ["web1.example.com"]
    response = await fleet.exec("env:prod,role:db", {"command": "true"})
    assert hostnames(response.body) == ["db1.example.com"]


async def test_label_matching_nobody_is_404_at_once(fleet: Controller) -> None:
    response = await fleet.exec("role:web,env:staging", {"command": "true", "timeout": 300})
    assert response.status == 404
    assert "role:web,env:staging" in response.body["details"]


async def test_unknown_host_is_404_at_once(fleet: Controller) -> None:
    response = await fleet.exec("web9.example.com", {"command": "true", "timeout": 300})
    assert response.status == 404
    assert response.body == {
        "error": "not found",
        "details": "no registered agent matches target 'web9.example.com'",
        "code": 404,
    }


async def test_any_runs_on_exactly_one_agent_and_spreads_load(fleet: Controller) -> None:
    served: collections.Counter[str] = collections.Counter()
    for _ in range(30):
        response = await fleet.exec("_any", {"command": "true"})
        assert response.status == 202
        [result] = response.body["results"]
        assert result["status"] == "completed"
        served[result["hostname"]] += 1
    assert set(served) <= set(FLEET)
    assert len(served) > 1, f"one agent took every job: {served}"


async def test_killed_agent_is_no_reply_and_the_others_complete(
    controller: Controller, live_agent: LiveAgent, live_agent_process: LiveAgentProcess
) -> None:
    await live_agent(controller, "alive-1")
    doomed = await live_agent_process(controller, "doomed-1")
    await live_agent(controller, "alive-2")
    os.kill(doomed.pid, signal.SIGKILL)
    await asyncio.to_thread(doomed.popen.wait)
    response = await controller.exec(
        "_all", {"command": "echo", "args": ["up"], "timeout": 1, "delivery_timeout": 1}
    )
    assert response.status == 202
    by_host = {r["hostname"]: r for r in response.body["results"]}
    assert sorted(by_host) == ["alive-1", "alive-2", "doomed-1"]
    assert by_host["doomed-1"]["status"] == "no_reply"
    assert by_host["doomed-1"]["changed"] is False
    assert by_host["doomed-1"]["error"] == "not acknowledged within 1s"
    for host in ("alive-1", "alive-2"):
        assert by_host[host]["status"] == "completed"
        assert by_host[host]["stdout"] == "up\n"


async def test_agent_that_stops_cleanly_leaves_the_registry_at_once(
    controller: Controller, live_agent: LiveAgent
) -> None:
    agent = await live_agent(controller, "leaving-1")
    await live_agent(controller, "staying-1")
    await agent.stop()
    await controller.registry.wait_until(
        lambda registry: [hb.hostname for hb in registry.live()] == ["staying-1"], 10
    )
    response = await controller.exec("leaving-1", {"command": "true"})
    assert response.status == 404
    response = await controller.exec("_all", {"command": "true"})
    assert hostnames(response.body) == ["staying-1"]
