"""Truthful health and bounded storage (issue 11, findings 8 and 9).

``/healthz`` fails when requests cannot succeed (NATS frozen, storage full) and
not because no agent runs; ``/livez`` answers while the process runs; every
stream and bucket has a ``max_bytes``, and a full job stream is a ``503 storage
full``, not ``NATS unavailable``; an agent forgets job ids as they expire.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from nats.aio.client import Client
from nats.js.api import DiscardPolicy

from agentd.dedupe import RecentJobs
from schemas.subjects import Subjects
from tests.helpers import Controller, LiveAgent, MakeController, NatsServer, Response
from tests.test_frozen_nats import frozen

# Far above what the settings below need (probe every 0.2 s, 0.5 s timeout), and
# the 10 s the operations guide promises with the defaults.
HEALTH_BOUND_S = 10.0
FAST_PROBE = {"health_probe_interval_s": 0.2, "health_probe_timeout_s": 0.5}
TINY_BYTES = 4096


async def health(controller: Controller, path: str = "/healthz") -> tuple[int, Any]:
    """The endpoint's status and body, asked without an API key."""
    async with controller.session.get(controller.url + path) as response:
        return response.status, await response.json()


async def health_until(controller: Controller, status: int) -> dict[str, Any]:
    """Poll ``/healthz`` until it answers ``status``; its body then.

    Raises:
        TimeoutError: not within HEALTH_BOUND_S.
    """
    async with asyncio.timeout(HEALTH_BOUND_S):
        while True:
            answered, body = await health(controller)
            if answered == status:
                result: dict[str, Any] = body
                return result
            await asyncio.sleep(0.05)


async def test_healthz_fails_while_nats_is_frozen_and_recovers(
    nats_server: NatsServer, make_controller: MakeController
) -> None:
    controller = await make_controller(**FAST_PROBE)
    assert (await health_until(controller, 200))["reasons"] == []
    with frozen(nats_server):
        body = await health_until(controller, 503)
        assert body["nats"] == "connected"  # the TCP connection stays open
        assert any("JetStream" in reason for reason in body["reasons"]), body
        assert await health(controller, "/livez") == (200, {"status": "alive"})
    assert (await health_until(controller, 200))["reasons"] == []


async def test_healthz_is_ok_without_agents(controller: Controller) -> None:
    assert await health(controller) == (
        200,
        {"status": "ok", "nats": "connected", "agents": 0, "reasons": [], "paused": None},
    )


async def test_livez_needs_no_key(controller: Controller) -> None:
    assert await health(controller, "/livez") == (200, {"status": "alive"})
    openapi = await controller.request("GET", "/openapi.json")
    assert "/livez" in openapi.body["paths"]


async def exec_until_refused(controller: Controller, key_prefix: str = "") -> Response:
    """Run ``true`` on agent-1 until a request is refused (each with its own
    ``Idempotency-Key`` given ``key_prefix``); that answer."""
    for n in range(TINY_BYTES // 100):  # every record is far above 100 bytes
        headers = {"Idempotency-Key": f"{key_prefix}{n}"} if key_prefix else None
        response = await controller.request(
            "POST", "/node/agent-1/command/exec", json={"command": "true"}, headers=headers
        )
        if response.status != 202:
            return response
    raise AssertionError(f"{TINY_BYTES} bytes held more than {TINY_BYTES // 100} requests")


async def test_full_job_stream_is_503_storage_full_until_there_is_room(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(jobs_max_bytes=TINY_BYTES)
    await live_agent(controller, "agent-1")
    response = await exec_until_refused(controller)
    assert response.status == 503, response
    assert response.body["error"] == "storage full"
    assert response.body["code"] == 503
    body = await health_until(controller, 503)
    assert any(reason.startswith("storage full") for reason in body["reasons"]), body
    assert body["status"].startswith("storage full")
    await make_controller(jobs_max_bytes=4 * TINY_BYTES)  # brings the stream to more room
    assert (await controller.exec("agent-1", {"command": "true"})).status == 202
    assert (await health_until(controller, 200))["reasons"] == []


async def test_full_idempotency_bucket_is_503_storage_full(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(idempotency_max_bytes=TINY_BYTES // 2)
    await live_agent(controller, "agent-1")
    response = await exec_until_refused(controller, key_prefix="key-")
    assert response.status == 503, response
    assert response.body["error"] == "storage full"


async def test_every_stream_and_bucket_gets_max_bytes_also_when_it_exists(
    nc: Client, make_controller: MakeController
) -> None:
    await make_controller()  # creates everything with the defaults
    sizes = {
        "jobs_max_bytes": 11 * 1024,
        "results_max_bytes": 12 * 1024,
        "audit_max_bytes": 13 * 1024,
        "idempotency_max_bytes": 14 * 1024,
        "registry_max_bytes": 15 * 1024,
        "fleet_max_bytes": 16 * 1024,
        "rollouts_max_bytes": 17 * 1024,
        "host_slots_max_bytes": 18 * 1024,
    }
    await make_controller(**sizes)
    subjects = Subjects("nexec")
    streams = {
        "jobs_max_bytes": subjects.jobs_stream(),
        "results_max_bytes": subjects.results_stream(),
        "audit_max_bytes": subjects.audit_stream(),
        "idempotency_max_bytes": f"KV_{subjects.idempotency_bucket()}",
        "registry_max_bytes": f"KV_{subjects.registry_bucket()}",
        "fleet_max_bytes": f"KV_{subjects.fleet_bucket()}",
        "rollouts_max_bytes": f"KV_{subjects.rollouts_bucket()}",
        "host_slots_max_bytes": f"KV_{subjects.host_slots_bucket()}",
    }
    js = nc.jetstream()
    for setting, stream in streams.items():
        config = (await js.stream_info(stream)).config
        assert config.max_bytes == sizes[setting], stream
        assert config.discard == DiscardPolicy.NEW, stream


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_agent_forgets_job_ids_as_they_expire() -> None:
    clock = FakeClock()
    recent = RecentJobs(clock=clock)
    for n in range(3):
        assert recent.take(f"job-{n}", clock.now + 10 + 10 * n, "reply") is None
    assert recent.take("job-0", clock.now + 10, "again") is not None  # still remembered
    clock.now += 15  # job-0 expired; job-1 and job-2 not yet
    assert recent.take("job-3", clock.now + 10, "reply") is None
    assert len(recent) == 3
    clock.now += 100
    assert recent.take("job-4", clock.now + 10, "reply") is None
    assert len(recent) == 1


def test_agent_keeps_at_most_max_entries_job_ids() -> None:
    clock = FakeClock()
    recent = RecentJobs(max_entries=2, clock=clock)
    for n in range(5):
        recent.take(f"job-{n}", clock.now + 60, "reply")
    assert len(recent) == 2
    assert recent.take("job-4", clock.now + 60, "again") is not None
