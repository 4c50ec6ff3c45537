"""The registry trusts the key, not the payload: a bad entry is refused (and counted),
never kills the watch, never makes a phantom, and every entry expires by the time
this controller observed it.

Synchronisation: the bad entries are published with a JetStream acknowledgement,
then the test waits until the registry has observed a heartbeat that the real agents
sent after that acknowledgement; every bad entry is earlier in the bucket's stream,
so the watcher has dealt with it by then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.registry.feed import RegistryFeed
from controller.registry.view import Registry
from nexec.dev.processes import start_nats_server
from schemas.decoding import WireError
from schemas.registry_entry import decode_heartbeat_from, registry_key_hostname
from schemas.subjects import Subjects
from tests.deployed_nats import GeneratedAuth, deploy_config
from tests.helpers import STARTUP_TIMEOUT_S, Controller, LiveAgent, MakeController
from tests.test_nats_permissions import LockedNats, connect_as

INTERVAL_S = 0.5
"""The real agents' heartbeat interval in these tests."""
SUBJECTS = Subjects()
NESTED_ENTRY = (
    b'{"type":"nexec.agent.v1.heartbeat","hostname":"h1","instance_id":"i","zz":'
    + b"[" * 2000
    + b"]" * 2000
    + b"}"
)


def entry(hostname: str, **fields: Any) -> bytes:
    """A registry entry, valid unless ``fields`` make it otherwise."""
    heartbeat = {
        "type": "nexec.agent.v1.heartbeat",
        "hostname": hostname,
        "instance_id": "hand-made",
        "labels": {"role": "web"},
        "version": "0.0.0",
        "started_at": time.time(),
        "sent_at": time.time(),
        "interval_s": 60.0,
        "jobs_running": 0,
        "load_avg": [0.0, 0.0, 0.0],
    }
    return json.dumps({**heartbeat, **fields}).encode()


async def put(js: JetStreamContext, key: str, data: bytes) -> None:
    """Write ``data`` under the registry key ``key`` (an encoded token), acknowledged."""
    await js.publish(f"$KV.{SUBJECTS.registry_bucket()}.{key}", data)


async def delete_key(js: JetStreamContext, key: str) -> None:
    bucket = await js.key_value(SUBJECTS.registry_bucket())
    await bucket.delete(key)


async def settle(controller: Controller, *hostnames: str) -> None:
    """Until the registry has observed, from each of these real agents, a heartbeat
    sent after now: the agent wrote it after everything written (and acknowledged)
    before now, and the watch takes the bucket's entries in the order they were written,
    so it has dealt with all of those."""
    mark = time.time()

    def fresh(registry: Any) -> bool:
        heartbeats = [registry.get(hostname) for hostname in hostnames]
        return all(hb is not None and hb.sent_at > mark for hb in heartbeats)

    await controller.registry.wait_until(fresh, STARTUP_TIMEOUT_S)


async def listed(controller: Controller) -> list[str]:
    response = await controller.request("GET", "/node")
    assert response.status == 200, response.body
    return [node["hostname"] for node in response.body["nodes"]]


async def assert_only_real_agents_run(controller: Controller, target: str, *real: str) -> None:
    response = await controller.exec(target, {"command": "echo", "args": ["hi"]})
    assert response.status == 202, response.body
    assert [(r["hostname"], r["status"], r["stdout"]) for r in response.body["results"]] == [
        (hostname, "completed", "hi\n") for hostname in real
    ]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("_5Fall", "not a valid agent hostname"),
        ("a_2F..", "not a valid agent hostname"),
        ("h_31", "not the canonical key of 'h1'"),
        ("h_zz", "not a valid token encoding"),
        ("h_", "not a valid token encoding"),
    ],
)
def test_a_registry_key_must_be_the_canonical_key_of_a_valid_hostname(key: str, why: str) -> None:
    assert registry_key_hostname("web1_2Eexample_2Ecom") == "web1.example.com"
    with pytest.raises(WireError, match=why):
        registry_key_hostname(key)


def test_a_heartbeat_speaks_only_for_its_key_and_shows_untrusted_text_short() -> None:
    assert decode_heartbeat_from(entry("h1"), hostname="h1").hostname == "h1"
    with pytest.raises(WireError, match="of 'h1' names host 'ghost'"):
        decode_heartbeat_from(entry("ghost"), hostname="h1")
    with pytest.raises(WireError, match=r"\.\.\. \(100000 characters\)") as refused:
        decode_heartbeat_from(entry("x" * 100_000), hostname="h1")
    assert len(str(refused.value)) < 200
    with pytest.raises(WireError, match="nested too deep"):
        decode_heartbeat_from(NESTED_ENTRY, hostname="h1")


@pytest.fixture
def locked_h1(tmp_path: Path) -> Iterator[LockedNats]:
    """deploy/nats/single.conf with the users ``nexec nats-auth`` generates for agent h1."""
    auth = GeneratedAuth.write(tmp_path / "generated", ["h1,role:web"])
    conf = deploy_config(
        "single.conf", tmp_path, {"/var/lib/nexec/nats": str(tmp_path / "jetstream")}
    )
    server, url = start_nats_server(tmp_path / "unused", config_file=conf)
    yield LockedNats(url, auth)
    server.stop()


async def test_a_nested_entry_from_an_agent_under_auth_does_not_blind_the_controller(
    locked_h1: LockedNats, make_controller: MakeController, agent_state_dir: Path
) -> None:
    controller = await make_controller(nats_url=locked_h1.url, **locked_h1.settings("controller"))
    settings = locked_h1.settings("agent-h1")
    agent = Agent(
        AgentConfig(
            nats_url=locked_h1.url,
            hostname="h1",
            labels={"role": "web"},
            heartbeat_interval_s=INTERVAL_S,
            state_dir=agent_state_dir,
            **settings,
        )
    )
    await agent.start()
    errors: asyncio.Queue[str] = asyncio.Queue()
    as_h1 = await connect_as(locked_h1, "agent-h1", errors)
    try:
        await controller.wait_for_agents("h1")
        await as_h1.jetstream().publish(SUBJECTS.registry_entry("h1"), NESTED_ENTRY)
        assert errors.empty()  # the agent's own user may write its entry
        await settle(controller, "h1")
        assert await listed(controller) == ["h1"]
        await assert_only_real_agents_run(controller, "h1", "h1")
        assert controller.registry.refused == 1
    finally:
        await as_h1.close()
        await agent.stop()


async def test_an_entry_naming_another_host_makes_no_phantom(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1", labels={"role": "web"}, heartbeat_interval_s=INTERVAL_S)
    await put(nc.jetstream(), "h1", entry("ghost", interval_s=1e308))
    await settle(controller, "h1")
    assert await listed(controller) == ["h1"]
    await assert_only_real_agents_run(controller, "role:web", "h1")
    ghost = await controller.request("GET", "/node/ghost")
    assert ghost.status == 404


async def test_entries_with_invalid_names_or_another_hosts_name_are_refused(
    controller: Controller,
    live_agent: LiveAgent,
    nc: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await live_agent(controller, "h1", heartbeat_interval_s=INTERVAL_S)
    js = nc.jetstream()
    too_long = ".".join(["a" * 60] * 5)  # valid parts, 304 characters in all
    bad = {
        "blank": entry(""),
        SUBJECTS.registry_key("_all"): entry("_all"),
        SUBJECTS.registry_key("bad host/../x"): entry("bad host/../x"),
        "long": entry("x" * 100_000),
        SUBJECTS.registry_key(too_long): entry(too_long),
        "spoofkey": entry("db1"),
        "db_31": entry("db1"),  # decodes to db1, but it is not the key db1's agent writes
    }
    caplog.set_level(logging.WARNING, logger="nexec.controller.registry")
    for key, data in bad.items():
        await put(js, key, data)
    await delete_key(js, "spoofkey")
    await settle(controller, "h1")
    assert await listed(controller) == ["h1"]
    await assert_only_real_agents_run(controller, "_all", "h1")
    assert controller.registry.refused == len(bad)
    assert "'spoofkey'" in caplog.text
    assert max(len(line) for line in caplog.text.splitlines()) < 1000


@pytest.mark.parametrize(
    "fields",
    [
        {"interval_s": 1e308},
        {"interval_s": 0},
        {"interval_s": -1},
        {"interval_s": 300.5},
        {"labels": {f"k{n}": "v" for n in range(65)}},
        {"labels": {"bad key": "v"}},
        {"labels": {"role": "x" * 64}},
        {"version": "v" * 100_000},
        {"instance_id": "i" * 100_000},
        {"load_avg": [0.0, 0.0, 0.0, 0.0]},
        {"jobs_running": -1},
    ],
    ids=lambda fields: next(iter(fields)),
)
async def test_entries_with_out_of_range_fields_are_refused(
    controller: Controller, live_agent: LiveAgent, nc: Client, fields: dict[str, Any]
) -> None:
    await live_agent(controller, "h1", labels={"role": "web"}, heartbeat_interval_s=INTERVAL_S)
    await put(nc.jetstream(), "bad1", entry("bad1", **fields))
    await settle(controller, "h1")
    assert await listed(controller) == ["h1"]
    assert controller.registry.refused == 1


async def test_an_entry_expires_by_the_time_it_was_observed(
    make_controller: MakeController, nc: Client
) -> None:
    """One valid entry, written by hand (no TTL: the server never removes it) and claiming
    a far future ``sent_at``; then an update claiming a huge interval, which is refused
    and leaves the first in place. The agent leaves three intervals after the first
    (once the registry watch's next check confirms it saw everything until then)."""
    controller = await make_controller(registry_check_interval_s=0.2)
    js = nc.jetstream()
    await put(js, "frozen1", entry("frozen1", interval_s=INTERVAL_S, sent_at=4e9))
    await controller.wait_for_agents("frozen1")
    await put(js, "frozen1", entry("frozen1", interval_s=1e308, sent_at=4e9))
    await controller.registry.wait_until(
        lambda registry: registry.get("frozen1") is None, STARTUP_TIMEOUT_S
    )
    assert await listed(controller) == []
    response = await controller.exec("frozen1", {"command": "true"})
    assert response.status == 404


async def test_a_watch_that_ends_says_so(nc: Client, caplog: pytest.LogCaptureFixture) -> None:
    """The watch runs for the controller's lifetime; if it ends before ``stop``, it is logged."""
    feed = RegistryFeed(Registry())
    await feed.start(nc.jetstream(), SUBJECTS, replicas=1)
    assert feed._watcher is not None and feed._task is not None
    await feed._watcher.stop()  # as if the watcher gave up
    await asyncio.wait_for(feed._task, STARTUP_TIMEOUT_S)
    assert "registry watch ended" in caplog.text
    await feed.stop()
