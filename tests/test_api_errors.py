"""Every bad request gets a precise error in the documented shape."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from controller.appkeys import NATS_LINK, REGISTRY_FEED
from nexec.dev.processes import (
    NATS_READY_RE,
    ManagedProcess,
    nats_server_binary,
    start_nats_server,
)
from runtime.ratelimit import RateLimiter
from tests.helpers import Controller, LiveAgent, MakeController, NatsServer


@pytest.fixture
async def ready(controller: Controller, live_agent: LiveAgent) -> Controller:
    await live_agent(controller, "agent-1")
    return controller


def assert_error(response: object, code: int, *fragments: str) -> None:
    status, body = response.status, response.body  # type: ignore[attr-defined]
    assert status == code, body
    assert set(body) == {"error", "details", "code"}
    assert body["code"] == code
    for fragment in fragments:
        assert fragment in body["details"], body["details"]


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        ({}, ["command", "missing required field"]),
        ({"command": ""}, ["command", "length >= 1"]),
        ({"command": "   "}, ["command: must not be blank"]),
        ({"command": 5}, ["command", "expected `str`"]),
        ({"command": "ls", "args": "-l"}, ["args", "expected `array`"]),
        ({"command": "ls", "args": ["-l", 3]}, ["args[1]", "expected `str`"]),
        ({"command": "ls", "timeout": 0}, ["timeout", ">= 1"]),
        ({"command": "ls", "timeout": 301}, ["timeout", "<= 300"]),
        ({"command": "ls", "timeout": "30"}, ["timeout", "expected `int`, got `str`"]),
        ({"command": "ls", "timeout": 2.5}, ["timeout", "expected `int`, got `float`"]),
        ({"command": "ls", "timeout": True}, ["timeout", "expected `int`, got `bool`"]),
        ({"command": "ls", "cwd": "relative/dir"}, ["cwd: must be an absolute path"]),
        ({"command": "ls", "cwd": 7}, ["cwd"]),
        ({"command": "ls\u0000x"}, ["command: must not contain a NUL byte"]),
        ({"command": "ls", "args": ["a\u0000"]}, ["args[0]: must not contain a NUL byte"]),
        ({"command": "ls", "timout": 5}, ["unknown field `timout`"]),
        ({"command": "ls", "delivery_timeout": 0.01}, ["delivery_timeout", ">= 0.1"]),
        ({"command": "ls", "delivery_timeout": 61}, ["delivery_timeout", "<= 60"]),
        ([], ["body: must be a JSON object"]),
        ("ls", ["body: must be a JSON object"]),
    ],
)
async def test_invalid_body_is_400_naming_the_field(
    ready: Controller, body: object, fragments: list[str]
) -> None:
    response = await ready.exec("agent-1", body)
    assert_error(response, 400, *fragments)
    assert response.body["error"] == "invalid request"


@pytest.mark.parametrize(
    "body",
    [
        b'{"command": "ls", "args": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"command": "ls", "zz": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"[" * 5000 + b"]" * 5000,
    ],
    ids=["in-a-field", "unknown-field", "top-level"],
)
async def test_deeply_nested_json_is_400(ready: Controller, body: bytes) -> None:
    response = await ready.request("POST", "/node/agent-1/command/exec", data=body)
    assert_error(response, 400, "body: JSON nested too deep")


async def test_invalid_json_is_400(ready: Controller) -> None:
    response = await ready.request("POST", "/node/agent-1/command/exec", data=b'{"command": "ls",')
    assert_error(response, 400, "body: invalid JSON")


async def test_empty_body_is_400(ready: Controller) -> None:
    response = await ready.request("POST", "/node/agent-1/command/exec", data=b"")
    assert_error(response, 400, "body: a JSON object is required")


async def test_omitted_timeout_means_30(ready: Controller) -> None:
    response = await ready.exec("agent-1", {"command": "true"})
    assert response.status == 202


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("role:", "invalid label 'role:'"),
        (":web", "invalid label ':web'"),
        ("role:web,", "invalid label ''"),
        ("role:web,env", "invalid label 'env'"),
        ("a:b:c", "invalid label 'a:b:c'"),
        ("role:web,role:db", "key 'role' given twice"),
        ("_other", "invalid hostname '_other'"),
        ("bad host", "invalid hostname"),
        ("a..b", "invalid hostname"),
    ],
)
async def test_malformed_target_is_400(ready: Controller, target: str, fragment: str) -> None:
    response = await ready.exec(target, {"command": "true"})
    assert_error(response, 400, "target:", fragment)


async def test_missing_key_is_401(ready: Controller) -> None:
    async with ready.session.post(
        ready.url + "/node/agent-1/command/exec", json={"command": "true"}
    ) as response:
        body = await response.json()
    assert response.status == 401
    assert body == {
        "error": "unauthorized",
        "details": "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
        "code": 401,
    }


async def test_unknown_key_is_401_before_the_body_is_read(ready: Controller) -> None:
    response = await ready.request(
        "POST", "/node/agent-1/command/exec", data=b"not even json", key="nxk_not-a-real-key"
    )
    assert_error(response, 401, "unknown API key")


async def test_x_api_key_header_is_accepted(ready: Controller) -> None:
    async with ready.session.post(
        ready.url + "/node/agent-1/command/exec",
        json={"command": "true"},
        headers={"X-API-Key": ready.api_key},
    ) as response:
        assert response.status == 202


async def test_key_without_exec_permission_is_403(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(keys={"reader": (["node:read"], [])})
    await live_agent(controller, "agent-1")
    response = await controller.exec(
        "agent-1", {"command": "true"}, key=controller.extra_keys["reader"]
    )
    assert_error(response, 403, "key 'reader' lacks the permission 'command:exec'")


async def test_job_routes_need_their_permissions(make_controller: MakeController) -> None:
    controller = await make_controller(keys={"runner": (["command:exec"], [])})
    key = controller.extra_keys["runner"]
    for method, path, permission in [
        ("GET", "/job", "job:read"),
        ("GET", "/job/some-id", "job:read"),
        ("DELETE", "/job/some-id", "job:cancel"),
    ]:
        response = await controller.request(method, path, key=key)
        assert_error(response, 403, f"lacks the permission '{permission}'")


async def test_key_outside_its_targets_is_403(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(keys={"webops": (["command:exec"], ["web*", "role:web"])})
    await live_agent(controller, "web1", labels={"role": "web"})
    await live_agent(controller, "db1", labels={"role": "db"})
    key = controller.extra_keys["webops"]
    assert (await controller.exec("web1", {"command": "true"}, key=key)).status == 202
    assert (await controller.exec("role:web", {"command": "true"}, key=key)).status == 202
    for target in ("db1", "_all", "_any", "role:db"):
        response = await controller.exec(target, {"command": "true"}, key=key)
        assert_error(response, 403, f"may not reach target '{target}'")


async def test_body_over_the_limit_is_413(make_controller: MakeController) -> None:
    controller = await make_controller(max_body_bytes=2048)
    body = json.dumps({"command": "echo", "args": ["x" * 4096]}).encode()
    response = await controller.request("POST", "/node/agent-1/command/exec", data=body)
    assert_error(response, 413, "larger than 2048 bytes")


async def test_unknown_route_and_wrong_method_keep_the_error_shape(ready: Controller) -> None:
    response = await ready.request("GET", "/no/such/route")
    assert_error(response, 404, "GET /no/such/route")
    response = await ready.request("GET", "/node/agent-1/command/exec")
    assert_error(response, 405, "GET /node/agent-1/command/exec")


async def test_nats_unreachable_is_503(
    make_controller: MakeController, unused_tcp_port: int
) -> None:
    controller = await make_controller(
        nats_url=f"nats://127.0.0.1:{unused_tcp_port}", wait_for_nats=False
    )
    response = await controller.exec("agent-1", {"command": "true"})
    assert_error(response, 503, "not connected to NATS")
    async with controller.session.get(controller.url + "/healthz") as health:
        assert health.status == 503
        assert (await health.json())["nats"] == "connecting"


async def test_nats_lost_after_start_is_503(
    controller: Controller, live_agent: LiveAgent, nats_server: NatsServer
) -> None:
    # With NATS gone, the agent's stop is bounded by connect_timeout_s: keep it short.
    await live_agent(controller, "agent-1", connect_timeout_s=0.2)
    await asyncio.to_thread(nats_server.stop)
    await controller.app[NATS_LINK].disconnected.wait()
    response = await controller.exec("agent-1", {"command": "true"})
    assert_error(response, 503, "not connected to NATS")


async def test_setup_is_retried_until_jetstream_answers(
    make_controller: MakeController, tmp_path: Path, unused_tcp_port: int
) -> None:
    """A controller whose first setup failed (JetStream off) is ready once it is on."""
    no_jetstream = ManagedProcess(
        [nats_server_binary(), "--addr", "127.0.0.1", "--port", str(unused_tcp_port)],
        name="nats-server without JetStream",
    )
    try:
        await asyncio.to_thread(no_jetstream.wait_for_line, NATS_READY_RE, 20)
        controller = await make_controller(
            nats_url=f"nats://127.0.0.1:{unused_tcp_port}", wait_for_nats=False
        )
        link = controller.app[NATS_LINK]
        await asyncio.wait_for(link.setup_failed.wait(), 20)
        response = await controller.exec("agent-1", {"command": "true"})
        assert_error(response, 503, "not connected to NATS")
        async with controller.session.get(controller.url + "/healthz") as health:
            assert health.status == 503
            reasons = (await health.json())["reasons"]
        assert any(reason.startswith("NATS setup failed") for reason in reasons), reasons
    finally:
        await asyncio.to_thread(no_jetstream.stop)
    server, _ = start_nats_server(tmp_path / "jetstream", port=unused_tcp_port)
    try:
        await asyncio.wait_for(link.ready.wait(), 40)
        async with controller.session.get(controller.url + "/healthz") as health:
            assert health.status == 200
    finally:
        await controller.close()
        await asyncio.to_thread(server.stop)


async def test_healthz_needs_no_key_and_reports_nats(ready: Controller) -> None:
    async with aiohttp.ClientSession() as session, session.get(ready.url + "/healthz") as response:
        assert response.status == 200
        assert await response.json() == {
            "status": "ok",
            "nats": "connected",
            "agents": 1,
            "reasons": [],
            "paused": None,
        }


async def test_healthz_fails_when_the_registry_view_stops_following(ready: Controller) -> None:
    """Without the registry watch no target resolves rightly: requests cannot succeed."""
    await ready.app[REGISTRY_FEED].stop()
    async with aiohttp.ClientSession() as session, session.get(ready.url + "/healthz") as response:
        assert response.status == 503
        body = await response.json()
    assert body == {
        "status": "registry not followed",
        "nats": "connected",
        "agents": 1,
        "reasons": ["registry not followed"],
        "paused": None,
    }


async def test_openapi_is_generated_from_the_models(ready: Controller) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(ready.url + "/openapi.json") as response,
    ):
        assert response.status == 200
        document = await response.json()
    operation = document["paths"]["/node/{hostname}/command/exec"]["post"]
    assert set(operation["responses"]) >= {
        *("202", "400", "401", "403", "404", "409", "413", "415", "429", "503")
    }
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in ready.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert documented == served
    for path, item in document["paths"].items():
        for method, spec in item.items():
            if "security" in spec:  # every operation that needs a key
                assert "Retry-After" in spec["responses"]["429"]["headers"], (method, path)
    schemas = document["components"]["schemas"]
    timeout = schemas["ExecRequest"]["properties"]["timeout"]
    assert (timeout["minimum"], timeout["maximum"], timeout["default"]) == (1, 300, 30)
    assert schemas["ExecRequest"]["required"] == ["command"]
    statuses = schemas["ResultStatus"]["enum"]
    assert set(statuses) == {"completed", "failed", "timeout", "cancelled", "no_reply", "skipped"}
    assert set(schemas["ErrorBody"]["required"]) == {"error", "details", "code"}
    assert "running" in schemas["JobState"]["enum"]
    assert schemas["ExecRequest"]["properties"]["delivery_timeout"]["anyOf"][0]["maximum"] == 60


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    make_controller: MakeController,
) -> None:
    controller = await make_controller(rate_limit_per_s=0.01, rate_limit_burst=2)
    statuses = []
    for _ in range(3):
        async with controller.session.get(
            controller.url + "/node", headers={"Authorization": f"Bearer {controller.api_key}"}
        ) as response:
            statuses.append(response.status)
            body = await response.json()
            retry_after = response.headers.get("Retry-After")
    assert statuses == [200, 200, 429]
    assert body["error"] == "too many requests"
    assert "key 'admin' is over its request rate" in body["details"]
    assert retry_after is not None and int(retry_after) >= 1


def test_rate_limiter_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.retry_after_s("k") for _ in range(3)] == [0, 0, 1]
    assert limiter.retry_after_s("other") == 0
    now[0] = 0.5
    assert limiter.retry_after_s("k") == 0
    assert RateLimiter(rate_per_s=0, burst=1).retry_after_s("k") == 0


async def test_key_target_patterns_follow_the_parsed_target(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(keys={"web": (["command:exec"], ["web*", "role:web"])})
    await live_agent(controller, "web1", labels={"role": "web", "env": "prod"})
    await live_agent(controller, "db1", labels={"webtier": "x", "env": "prod"})
    key = controller.extra_keys["web"]
    for target in ("role:web,env:prod", "env:prod,role:web"):
        assert (await controller.exec(target, {"command": "true"}, key=key)).status == 202
    for target in ("webtier:x", "env:prod"):  # a host pattern never admits a label
        response = await controller.exec(target, {"command": "true"}, key=key)
        assert_error(response, 403, f"may not reach target '{target}'")


async def test_a_cursor_past_the_end_answers_at_once(controller: Controller) -> None:
    for path in ("/job?cursor=18446744073709551615", "/audit?cursor=18446744073709551615"):
        response = await controller.request("GET", path)
        assert response.status == 200, response.body
