"""The audit trail: exec, shell, cancel, 401 and 403 are recorded, without secrets."""

from __future__ import annotations

import time
from typing import Any

from controller.appkeys import AUDIT
from tests.helpers import Controller, LiveAgent, MakeController


async def audit_page(controller: Controller, query: str = "") -> dict[str, Any]:
    # Appends are acknowledged in the background: wait until they are stored.
    await controller.app[AUDIT].flushed()
    response = await controller.request("GET", f"/audit{query}")
    assert response.status == 200, response.body
    page: dict[str, Any] = response.body
    return page


async def test_exec_401_and_403_are_recorded_newest_first(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(keys={"reader": (["job:read"], [])})
    await live_agent(controller, "a1")
    ran = await controller.exec("a1", {"command": "echo", "args": ["$(id)", "x y"]})
    denied = await controller.exec("a1", {"command": "true"}, key=controller.extra_keys["reader"])
    unknown = await controller.exec("a1", {"command": "true"}, key="nxk_wrong-key")
    assert (ran.status, denied.status, unknown.status) == (202, 403, 401)

    records = (await audit_page(controller))["records"]
    assert [r["status"] for r in records] == [401, 403, 202]
    unauthorized, forbidden, accepted = records
    assert accepted["key_name"] == "admin"
    assert (accepted["method"], accepted["path"]) == ("POST", "/node/a1/command/exec")
    assert (accepted["target"], accepted["command"], accepted["args"]) == (
        "a1",
        "echo",
        ["$(id)", "x y"],
    )
    assert accepted["job_id"] == ran.body["job_id"]
    assert accepted["outcome"] == "accepted"
    assert accepted["source"] == "127.0.0.1"
    assert forbidden["key_name"] == "reader"
    assert forbidden["outcome"] == "forbidden"
    assert unauthorized["key_name"] == ""
    assert unauthorized["outcome"] == "unauthorized"
    text = str(records)
    for secret in (controller.api_key, controller.extra_keys["reader"], "nxk_wrong-key"):
        assert secret not in text


async def test_shell_and_cancel_are_recorded_and_filters_work(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "a1", allow_shell=True)
    before = time.time()
    await controller.request("POST", "/node/a1/command/shell", json={"command": "echo hi | wc -c"})
    ended = await controller.exec("a1", {"command": "true"})
    cancel = await controller.request("POST", f"/job/{ended.body['job_id']}/cancel")
    assert cancel.status == 409
    records = (await audit_page(controller, f"?since={before}"))["records"]
    assert [r["path"] for r in records] == [
        f"/job/{ended.body['job_id']}/cancel",
        "/node/a1/command/exec",
        "/node/a1/command/shell",
    ]
    assert records[0]["job_id"] == ended.body["job_id"]
    assert records[0]["outcome"] == "conflict"
    assert (records[2]["shell"], records[2]["command"]) == (True, "echo hi | wc -c")

    page = await audit_page(controller, "?limit=1")
    assert len(page["records"]) == 1
    rest = await audit_page(controller, f"?cursor={page['next_cursor']}")
    assert [r["path"] for r in rest["records"]] == [r["path"] for r in records[1:]]
    assert (await audit_page(controller, "?key=nobody"))["records"] == []
    assert (await audit_page(controller, f"?until={before}"))["records"] == []


async def test_audit_needs_audit_read(make_controller: MakeController) -> None:
    controller = await make_controller(keys={"ops": (["command:exec"], [])})
    response = await controller.request("GET", "/audit", key=controller.extra_keys["ops"])
    assert response.status == 403
    assert "audit:read" in response.body["details"]
    bad = await controller.request("GET", "/audit?since=yesterday")
    assert bad.status == 400


async def test_requests_without_a_valid_key_are_rate_limited_by_address_and_cut_short(
    make_controller: MakeController,
) -> None:
    """Each 401 is audited: a flood from one address stops being audited at the
    address's rate, and a long path is kept short."""
    controller = await make_controller(rate_limit_per_s=0.01, rate_limit_burst=3)
    statuses = [
        (await controller.request("GET", "/job/" + "a" * 5000, key="nxk_wrong")).status
        for _ in range(10)
    ]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}
    records = (await audit_page(controller))["records"]
    assert [r["status"] for r in records] == [401, 401, 401]
    assert all(len(r["path"]) <= 260 for r in records)
    # A valid key is limited on its own: it still gets through (its burst is 3 too;
    # audit_page above took one).
    assert (await controller.request("GET", "/job")).status == 200
