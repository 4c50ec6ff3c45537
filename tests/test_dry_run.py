"""``?dry_run=true`` on exec and shell: every check runs, nothing is recorded or run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.appkeys import AUDIT
from tests.helpers import Controller, MakeAgent, MakeController, Response


async def audit_records(controller: Controller) -> list[dict[str, Any]]:
    await controller.app[AUDIT].flushed()
    response = await controller.request("GET", "/audit")
    assert response.status == 200, response.body
    records: list[dict[str, Any]] = response.body["records"]
    return records


async def exec_query(
    controller: Controller, target: str, query: str, body: Any, *, key: str | None = None
) -> Response:
    return await controller.request(
        "POST", f"/node/{target}/command/exec?{query}", json=body, key=key
    )


@pytest.fixture
async def fleet(make_controller: MakeController, make_agent: MakeAgent) -> Controller:
    controller = await make_controller(
        keys={
            "web-only": (["command:exec", "command:shell"], ["role:web"]),
            "reader": (["job:read"], []),
        }
    )
    for host, role in (("web2", "web"), ("web1", "web"), ("db1", "db")):
        await make_agent(host, labels={"role": role}, allow_shell=True)
    await controller.wait_for_agents("web1", "web2", "db1")
    return controller


async def test_a_dry_run_runs_nothing_records_no_job_and_is_audited(
    fleet: Controller, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    jobs_before = await fleet.request("GET", "/job")
    for kind, body in (
        ("exec", {"command": "touch", "args": [str(marker)]}),
        ("shell", {"command": f"touch {marker}"}),
    ):
        answer = await fleet.request(
            "POST", f"/node/role:web/command/{kind}?dry_run=true", json=body
        )
        assert answer.status == 200, answer.body
        assert answer.body == {"hosts": ["web1", "web2"], "count": 2, "batch_size": 2}
    ran = await fleet.exec("_all", {"command": "true"})  # a real job, after the dry runs
    assert ran.status == 202
    assert not marker.exists()
    jobs_after = await fleet.request("GET", "/job")
    assert [job["job_id"] for job in jobs_after.body["jobs"]] == [
        ran.body["job_id"],
        *(job["job_id"] for job in jobs_before.body["jobs"]),
    ]
    records = await audit_records(fleet)
    assert [(r["path"], r["dry_run"], r["job_id"]) for r in records] == [
        ("/node/_all/command/exec", False, ran.body["job_id"]),
        ("/node/role:web/command/shell", True, ""),
        ("/node/role:web/command/exec", True, ""),
    ]
    assert records[1]["status"] == records[2]["status"] == 200
    assert (records[1]["command"], records[1]["shell"]) == (f"touch {marker}", True)


async def test_dry_run_false_runs_it(fleet: Controller) -> None:
    answer = await exec_query(fleet, "web1", "dry_run=false", {"command": "true"})
    assert answer.status == 202
    assert [r["status"] for r in answer.body["results"]] == ["completed"]


@pytest.mark.parametrize("value", ["yes", "True", "1", ""])
async def test_any_other_value_is_400_naming_the_parameter(fleet: Controller, value: str) -> None:
    answer = await exec_query(fleet, "web1", f"dry_run={value}", {"command": "true"})
    assert answer.status == 400
    assert answer.body["details"] == "dry_run: expected true or false"


async def test_any_lists_every_host_that_could_take_it_one_at_a_time(fleet: Controller) -> None:
    answer = await exec_query(fleet, "_any", "dry_run=true", {"command": "true"})
    assert answer.status == 200
    assert answer.body == {"hosts": ["db1", "web1", "web2"], "count": 3, "batch_size": 1}


async def test_a_dry_run_is_refused_as_the_real_run_would_be(fleet: Controller) -> None:
    web_only = fleet.extra_keys["web-only"]
    reader = fleet.extra_keys["reader"]
    cases: list[tuple[str, Any, str | None, int, str]] = [
        ("db1", {"command": "true"}, web_only, 403, "may not reach target 'db1'"),
        ("role:db", {"command": "true"}, web_only, 403, "may not reach target 'role:db'"),
        ("web1", {"command": "true"}, reader, 403, "lacks the permission 'command:exec'"),
        ("nosuch", {"command": "true"}, None, 404, "no registered agent matches"),
        ("role:none", {"command": "true"}, None, 404, "no registered agent matches"),
        ("web1", {"command": "true", "timeout": 0}, None, 400, "timeout"),
        ("web1", {"args": []}, None, 400, "command"),
    ]
    for target, body, key, status, details in cases:
        for dry_run in ("true", "false"):
            answer = await exec_query(fleet, target, f"dry_run={dry_run}", body, key=key)
            assert answer.status == status, (target, dry_run, answer.body)
            assert details in answer.body["details"], (target, answer.body)
    records = await audit_records(fleet)
    refusals = [r for r in records if r["status"] in (403, 404)]
    assert len(refusals) == 10
    # Each case ran as a dry run, then for real (newest first: real, then dry).
    assert [r["dry_run"] for r in refusals] == [False, True] * 5
    allowed = await exec_query(fleet, "role:web", "dry_run=true", {"command": "true"}, key=web_only)
    assert allowed.body == {"hosts": ["web1", "web2"], "count": 2, "batch_size": 2}


async def test_the_dry_run_answer_is_in_the_openapi_document(controller: Controller) -> None:
    async with controller.session.get(controller.url + "/openapi.json") as response:
        document = json.loads(await response.read())
    for kind in ("exec", "shell"):
        operation = document["paths"][f"/node/{{hostname}}/command/{kind}"]["post"]
        ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/DryRunResponse"}
        names = [p["name"] for p in operation["parameters"]]
        assert "dry_run" in names
    schema = document["components"]["schemas"]["DryRunResponse"]
    assert set(schema["required"]) == {"hosts", "count", "batch_size"}
