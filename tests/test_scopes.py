"""Target scopes apply to everything a key touches: jobs, output, nodes and the audit trail.

A job or node outside a key's scope answers exactly as a missing one; lists are
filtered, and a filtered page may be short but its cursor still reaches every item.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from nats.aio.client import Client

from controller.appkeys import AUDIT, JOB_STORE
from controller.jobs.pages import PAGE_READS_PER_ITEM
from schemas.messages import ExecJob, JobRecord, encode
from schemas.subjects import Subjects
from tests.helpers import (
    Controller,
    Fifo,
    LiveAgent,
    MakeController,
    Response,
    recorded_result,
)

EVERYTHING = ["command:exec", "job:read", "job:cancel", "node:read", "audit:read"]


async def scoped_controller(make_controller: MakeController) -> Controller:
    """A controller with the key ``web``, which may do everything but only on ``web*``,
    and the key ``webrole``, limited to the label ``role:web``."""
    return await make_controller(
        keys={"web": (EVERYTHING, ["web*"]), "webrole": (EVERYTHING, ["role:web"])}
    )


async def all_pages(controller: Controller, path: str, field: str, key: str) -> list[list[Any]]:
    """Every page of a listing, following ``next_cursor`` until it is null."""
    pages: list[list[Any]] = []
    cursor = ""
    while True:
        separator = "&" if "?" in path else "?"
        query = f"{separator}cursor={cursor}" if cursor else ""
        response = await controller.request("GET", f"{path}{query}", key=key)
        assert response.status == 200, response.body
        pages.append(response.body[field])
        cursor = response.body["next_cursor"]
        if cursor is None:
            return pages


def assert_same_as_missing(
    response: Response, missing: Response, name: str, missing_name: str
) -> None:
    assert response.status == missing.status == 404
    assert response.body == {
        **missing.body,
        "details": missing.body["details"].replace(missing_name, name),
    }


async def test_a_job_outside_the_scope_is_404_and_untouched(
    make_controller: MakeController, live_agent: LiveAgent, nc: Client, started: Fifo
) -> None:
    controller = await scoped_controller(make_controller)
    await live_agent(controller, "web1")
    await live_agent(controller, "db1")
    web = controller.extra_keys["web"]
    body = {
        "command": "sh",
        "args": ["-c", f"echo go > {started.path}; exec sleep 300"],
        "timeout": 300,
    }
    db_job = (
        await controller.request("POST", "/node/db1/command/exec?wait=false", json=body)
    ).body["job_id"]
    web_job = (
        await controller.request("POST", "/node/web1/command/exec?wait=false", json=body, key=web)
    ).body["job_id"]
    await started.lines(2)

    unknown = str(uuid.uuid4())
    for method, suffix in [("GET", ""), ("GET", "/output"), ("POST", "/cancel"), ("DELETE", "")]:
        missing = await controller.request(method, f"/job/{unknown}{suffix}", key=web)
        hidden = await controller.request(method, f"/job/{db_job}{suffix}", key=web)
        assert_same_as_missing(hidden, missing, db_job, unknown)

    # The db1 job still exists and still runs: only the admin's cancel stops it.
    job = await controller.request("GET", f"/job/{db_job}")
    assert (job.status, job.body["state"]) == (200, "running")
    assert (await controller.request("POST", f"/job/{db_job}/cancel")).status == 202
    result = await recorded_result(nc, db_job, "db1")
    assert result["error"] == "cancelled on request of admin; process group killed"

    # Inside its scope the key reads, cancels and deletes as before.
    assert (await controller.request("GET", f"/job/{web_job}", key=web)).status == 200
    assert (await controller.request("POST", f"/job/{web_job}/cancel", key=web)).status == 202
    result = await recorded_result(nc, web_job, "web1")
    assert result["error"] == "cancelled on request of web; process group killed"
    async with controller.session.get(
        f"{controller.url}/job/{web_job}/output", headers={"Authorization": f"Bearer {web}"}
    ) as output:
        assert output.status == 200
        assert b"event: end" in await output.read()
    assert (await controller.request("DELETE", f"/job/{web_job}", key=web)).status == 204
    assert (await controller.request("GET", f"/job/{db_job}")).status == 200


async def test_job_list_shows_only_jobs_in_scope_and_pages_reach_them_all(
    make_controller: MakeController, nc: Client
) -> None:
    controller = await make_controller(keys={"web": (["job:read"], ["web*", "role:web"])})
    js = nc.jetstream()
    now = time.time()
    targets = ["db1", "_all", "_any", "role:db", "web-not:a-target!", "dbweb1", "db2"]
    visible: list[str] = []
    for index in range(40):
        target = (
            ["web1", "role:web,env:prod"][index % 2]
            if index % 9 == 0
            else targets[index % len(targets)]
        )
        job_id = f"job-{index:03d}"
        if index % 9 == 0:
            visible.append(job_id)
        record = JobRecord(
            job=ExecJob(job_id=job_id, command="true", deadline=now, target=target, created_at=now),
            expected_hosts=["h1"],
        )
        await js.publish_async(Subjects().job_record(job_id), encode(record))
    await js.publish_async_completed()
    web = controller.extra_keys["web"]

    store = controller.app[JOB_STORE]
    reads_before = store.reads
    first = await controller.request("GET", "/job?limit=2", key=web)
    assert store.reads - reads_before <= 1 + PAGE_READS_PER_ITEM * 2
    assert first.body["next_cursor"] is not None

    pages = await all_pages(controller, "/job?limit=2", "jobs", web)
    assert [job["job_id"] for page in pages for job in page] == visible[::-1]
    assert all(len(page) <= 2 for page in pages)
    assert any(len(page) < 2 for page in pages[:-1])  # short pages, and still a cursor
    everything = await all_pages(controller, "/job?limit=500", "jobs", controller.api_key)
    assert len(everything[0]) == 40


async def test_nodes_outside_the_scope_are_not_seen(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await scoped_controller(make_controller)
    await live_agent(controller, "web1", labels={"role": "web"})
    await live_agent(controller, "db1", labels={"role": "db"})
    await live_agent(controller, "lb1", labels={"role": "web"})
    web, webrole = controller.extra_keys["web"], controller.extra_keys["webrole"]

    async def hostnames(path: str, key: str) -> list[str]:
        response = await controller.request("GET", path, key=key)
        assert response.status == 200, response.body
        return [node["hostname"] for node in response.body["nodes"]]

    assert await hostnames("/node", controller.api_key) == ["db1", "lb1", "web1"]
    assert await hostnames("/node", web) == ["web1"]
    assert await hostnames("/node/web1", web) == ["web1"]
    missing = await controller.request("GET", "/node/nope", key=web)
    assert_same_as_missing(
        await controller.request("GET", "/node/db1", key=web), missing, "db1", "nope"
    )
    assert_same_as_missing(
        await controller.request("GET", "/node/lb1", key=web), missing, "lb1", "nope"
    )
    for selector in ("_all", "role:db"):  # a selector outside the scope: 403, as for exec
        assert (await controller.request("GET", f"/node/{selector}", key=web)).status == 403

    # A label pattern reaches the nodes carrying the label, by name too.
    assert await hostnames("/node", webrole) == ["lb1", "web1"]
    assert await hostnames("/node/role:web", webrole) == ["lb1", "web1"]
    assert await hostnames("/node/lb1", webrole) == ["lb1"]
    assert (await controller.request("GET", "/node/db1", key=webrole)).status == 404


async def test_audit_shows_a_scoped_key_its_own_records_only(
    make_controller: MakeController,
) -> None:
    controller = await scoped_controller(make_controller)
    web = controller.extra_keys["web"]
    own: list[str] = []
    for round_ in range(4):  # audited requests that fail fast: cancels of unknown jobs
        for other in range(6):
            await controller.request("POST", f"/job/admin-{round_}-{other}/cancel")
        own.append(f"web-{round_}")
        await controller.request("POST", f"/job/web-{round_}/cancel", key=web)
    await controller.app[AUDIT].flushed()

    pages = await all_pages(controller, "/audit?limit=1", "records", web)
    assert [record["job_id"] for page in pages for record in page] == own[::-1]
    assert {record["key_name"] for page in pages for record in page} == {"web"}
    assert any(page == [] for page in pages[:-1])  # short pages, and still a cursor
    others = await controller.request("GET", "/audit?key=admin", key=web)
    assert (others.status, others.body) == (200, {"records": [], "next_cursor": None})
    everyone = await controller.request("GET", "/audit?limit=500")
    assert len(everyone.body["records"]) == 4 * 7


async def test_delete_is_in_the_audit_trail(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await scoped_controller(make_controller)
    await live_agent(controller, "db1")
    first, second = [
        (await controller.exec("db1", {"command": "true"})).body["job_id"] for _ in "12"
    ]
    assert (await controller.request("DELETE", f"/job/{first}")).status == 204
    await controller.app[AUDIT].flushed()
    records = (await controller.request("GET", "/audit?limit=1")).body["records"]
    assert [(r["key_name"], r["method"], r["path"], r["status"], r["job_id"]) for r in records] == [
        ("admin", "DELETE", f"/job/{first}", 204, first)
    ]

    hidden = await controller.request("DELETE", f"/job/{second}", key=controller.extra_keys["web"])
    assert hidden.status == 404
    await controller.app[AUDIT].flushed()
    records = (await controller.request("GET", "/audit?limit=1")).body["records"]
    assert [
        (r["key_name"], r["method"], r["status"], r["job_id"], r["outcome"]) for r in records
    ] == [("web", "DELETE", 404, second, "not found")]
