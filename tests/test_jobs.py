"""Job records in JetStream: read, list, delete, async waits, idempotency, and
controllers that share them (two at once, one restarted mid-job)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import nats.js.errors
import pytest
from nats.aio.client import Client

from controller.appkeys import JOB_STORE, NATS_LINK
from controller.natslink import LinkState
from schemas.messages import ExecJob, JobRecord, encode
from schemas.subjects import Subjects
from tests.helpers import (
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
    recorded_result,
)


async def test_get_job_returns_the_request_state_and_results(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "h1")
    await live_agent(controller, "h2")
    ran = await controller.exec("_all", {"command": "sh", "args": ["-c", "echo $0", "x"]})
    job_id = ran.body["job_id"]
    got = await controller.request("GET", f"/job/{job_id}")
    assert got.status == 200
    job = got.body
    assert job["state"] == "completed"
    assert job["complete"] is True
    assert (job["target"], job["command"], job["args"]) == ("_all", "sh", ["-c", "echo $0", "x"])
    assert job["caller"] == "admin"
    assert job["expected_hosts"] == ["h1", "h2"]
    assert job["results"] == ran.body["results"]


async def test_a_shell_job_says_so_in_its_view_and_in_the_list(
    controller: Controller, live_agent: LiveAgent
) -> None:
    """``shell`` (additive): true for ``/command/shell``, false for exec, so a reader
    can show ``sh -c '...'`` rather than one quoted word (docs/jobs.md)."""
    await live_agent(controller, "h1", allow_shell=True)
    shell = await controller.request(
        "POST", "/node/h1/command/shell", json={"command": "echo hi | wc -c"}
    )
    assert shell.status == 202, shell.body
    exec_ = await controller.exec("h1", {"command": "/bin/true"})
    for job_id, expected in ((shell.body["job_id"], True), (exec_.body["job_id"], False)):
        got = await controller.request("GET", f"/job/{job_id}")
        assert got.body["shell"] is expected
    listed = await controller.request("GET", "/job")
    assert {job["job_id"]: job["shell"] for job in listed.body["jobs"]} == {
        shell.body["job_id"]: True,
        exec_.body["job_id"]: False,
    }


async def test_job_state_is_failed_when_no_host_completed(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "h1")
    ran = await controller.exec("h1", {"command": "/nonexistent/x"})
    job = await controller.request("GET", f"/job/{ran.body['job_id']}")
    assert job.body["state"] == "failed"


async def test_unknown_job_is_404(controller: Controller) -> None:
    response = await controller.request("GET", f"/job/{uuid.uuid4()}")
    assert response.status == 404
    assert "no job" in response.body["details"]


@pytest.mark.parametrize("job_id", ["a" * 4100, "." * 1400], ids=["long", "escaped"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_a_job_id_too_long_to_exist_is_404_and_never_reaches_nats(
    controller: Controller, live_agent: LiveAgent, job_id: str, method: str
) -> None:
    """A subject over nats-server's control-line limit would make it close the
    controller's connection for good."""
    await live_agent(controller, "h1")
    for path in (f"/job/{job_id}", f"/job/{job_id}/output"):
        response = await controller.request(method if path.endswith(job_id) else "GET", path)
        assert response.status == 404, response.body
    cancel = await controller.request("POST", f"/job/{job_id}/cancel")
    assert cancel.status == 404
    assert (await controller.exec("h1", {"command": "true"})).status == 202
    assert controller.app[NATS_LINK].state is LinkState.CONNECTED


async def test_wait_false_returns_at_once_and_the_result_lands_in_the_record(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1")
    started = await controller.request(
        "POST",
        "/node/h1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", "sleep 0.5; echo late"]},
    )
    assert started.status == 202
    assert started.body["results"] == []
    assert started.body["complete"] is False
    job_id = started.body["job_id"]
    running = await controller.request("GET", f"/job/{job_id}")
    assert running.body["state"] in {"running", "completed"}
    recorded = await recorded_result(nc, job_id, "h1")
    assert recorded["stdout"] == "late\n"
    done = await controller.request("GET", f"/job/{job_id}")
    assert done.body["state"] == "completed"
    assert done.body["results"][0]["stdout"] == "late\n"


async def test_wait_n_returns_what_arrived_and_marks_the_answer_incomplete(
    controller: Controller, live_agent: LiveAgent, nc: Client, tmp_path: Path
) -> None:
    await live_agent(controller, "h1")
    gate = tmp_path / "gate"
    gate.mkdir()
    script = f"while [ -d {gate} ]; do sleep 0.05; done; echo through"
    response = await controller.request(
        "POST", "/node/h1/command/exec?wait=1", json={"command": "sh", "args": ["-c", script]}
    )
    assert response.status == 202
    assert response.body["complete"] is False
    assert response.body["results"] == []
    gate.rmdir()
    job_id = response.body["job_id"]
    await recorded_result(nc, job_id, "h1")
    done = await controller.request("GET", f"/job/{job_id}")
    assert done.body["state"] == "completed"
    assert done.body["results"][0]["stdout"] == "through\n"


@pytest.mark.parametrize("wait", ["yes", "-1", "301", "1.5", "²", "٣"])
async def test_invalid_wait_is_400(
    controller: Controller, live_agent: LiveAgent, wait: str
) -> None:
    await live_agent(controller, "h1")
    response = await controller.request(
        "POST", f"/node/h1/command/exec?wait={wait}", json={"command": "true"}
    )
    assert response.status == 400
    assert response.body["details"].startswith("wait:")


async def test_idempotency_key_returns_the_same_job_and_runs_nothing_again(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await live_agent(controller, "h1")
    log = tmp_path / "runs"
    body = {"command": "sh", "args": ["-c", f"echo run >> {log}; echo once"]}
    headers = {"Idempotency-Key": "deploy-42"}
    first = await controller.request("POST", "/node/h1/command/exec", json=body, headers=headers)
    again = await controller.request("POST", "/node/h1/command/exec", json=body, headers=headers)
    assert first.status == again.status == 202
    assert again.body["job_id"] == first.body["job_id"]
    assert again.body["results"] == first.body["results"]
    assert again.body["complete"] is True
    assert log.read_text() == "run\n"

    changed = await controller.request(
        "POST",
        "/node/h1/command/exec",
        json={**body, "timeout": 5},
        headers=headers,
    )
    assert changed.status == 409
    assert changed.body["code"] == 409
    assert first.body["job_id"] in changed.body["details"]
    other_key = await controller.request(
        "POST", "/node/h1/command/exec", json=body, headers={"Idempotency-Key": "deploy-43"}
    )
    assert other_key.body["job_id"] != first.body["job_id"]
    assert log.read_text() == "run\nrun\n"


async def test_dead_agent_costs_the_delivery_timeout_not_the_command_timeout(
    controller: Controller, live_agent: LiveAgent, live_agent_process: LiveAgentProcess
) -> None:
    await live_agent(controller, "alive")
    doomed = await live_agent_process(controller, "doomed")
    await asyncio.to_thread(doomed.stop, signum=signal.SIGKILL)
    # Waiting for the dead host's 300 s timeout would trip the test's 60 s
    # limit; the live host, which acknowledged, is waited for past the 1 s
    # delivery timeout until its 2 s command is done.
    response = await controller.exec(
        "_all",
        {
            "command": "sh",
            "args": ["-c", "sleep 2; echo alive"],
            "timeout": 300,
            "delivery_timeout": 1,
        },
    )
    by_host = {r["hostname"]: r for r in response.body["results"]}
    assert by_host["doomed"]["status"] == "no_reply"
    assert by_host["doomed"]["error"] == "not acknowledged within 1s"
    assert by_host["alive"]["status"] == "completed"
    assert by_host["alive"]["stdout"] == "alive\n"
    assert response.body["complete"] is True
    job = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert job.body["state"] == "partial"
    assert job.body["complete"] is True
    assert job.body["results"] == response.body["results"]


async def test_single_host_without_subscriber_fails_at_once_with_no_responders(
    controller: Controller, live_agent_process: LiveAgentProcess
) -> None:
    doomed = await live_agent_process(controller, "doomed")
    await asyncio.to_thread(doomed.stop, signum=signal.SIGKILL)
    # Neither the 300 s timeout nor the 60 s delivery timeout is waited for.
    response = await controller.exec(
        "doomed", {"command": "true", "timeout": 300, "delivery_timeout": 60}
    )
    [result] = response.body["results"]
    assert result["status"] == "no_reply"
    assert "no responders" in result["error"]


async def test_two_controllers_share_jobs_and_a_restart_loses_nothing(
    make_controller: MakeController, live_agent: LiveAgent, nc: Client
) -> None:
    first = await make_controller()
    second = await make_controller()
    await live_agent(first, "h1")
    await second.wait_for_agents("h1")
    ran = await first.exec("h1", {"command": "echo", "args": ["shared"]})
    on_second = await second.request("GET", f"/job/{ran.body['job_id']}")
    assert on_second.body["results"] == ran.body["results"]
    listed = await second.request("GET", "/job")
    assert [job["job_id"] for job in listed.body["jobs"]] == [ran.body["job_id"]]

    started = await first.request(
        "POST",
        "/node/h1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", "sleep 0.5; echo survived"]},
    )
    await first.close()  # the controller that took the request goes away mid-job
    job_id = started.body["job_id"]
    await recorded_result(nc, job_id, "h1")
    job = await second.request("GET", f"/job/{job_id}")
    assert job.body["state"] == "completed"
    assert job.body["results"][0]["stdout"] == "survived\n"

    deleted = await second.request("DELETE", f"/job/{ran.body['job_id']}")
    assert deleted.status == 204
    assert (await second.request("GET", f"/job/{ran.body['job_id']}")).status == 404
    assert (await second.request("DELETE", f"/job/{ran.body['job_id']}")).status == 404
    with pytest.raises(nats.js.errors.NotFoundError):  # its results went with it
        await nc.jetstream().get_last_msg(
            "nexec_results", Subjects().result_record(ran.body["job_id"], "h1")
        )


async def test_listing_10000_jobs_costs_per_page_not_per_job(
    controller: Controller, nc: Client
) -> None:
    js = nc.jetstream()
    now = time.time()
    job_ids = [f"job-{index:05d}" for index in range(10_000)]
    for job_id in job_ids:
        record = JobRecord(
            job=ExecJob(job_id=job_id, command="true", deadline=now, target="_all", created_at=now),
            expected_hosts=["h1"],
        )
        await js.publish_async(Subjects().job_record(job_id), encode(record))
    await js.publish_async_completed()
    store = controller.app[JOB_STORE]

    reads_before = store.reads
    first = await controller.request("GET", "/job?limit=50")
    assert first.status == 200
    assert [job["job_id"] for job in first.body["jobs"]] == job_ids[::-1][:50]
    assert store.reads - reads_before == 51  # stream info + one read per job

    await controller.request("DELETE", f"/job/{job_ids[-60]}")
    reads_before = store.reads
    second = await controller.request("GET", f"/job?limit=50&cursor={first.body['next_cursor']}")
    expected = [job_id for job_id in job_ids[::-1][50:101] if job_id != job_ids[-60]]
    assert [job["job_id"] for job in second.body["jobs"]] == expected
    assert store.reads - reads_before == 52  # one more for the deleted job skipped

    last = await controller.request("GET", "/job?limit=5&cursor=3")
    assert [job["job_id"] for job in last.body["jobs"]] == [job_ids[1], job_ids[0]]
    assert last.body["next_cursor"] is None
    bad = await controller.request("GET", "/job?limit=0")
    assert bad.status == 400
    for query in ("cursor=abc", "cursor=²", "limit=²", "limit=٣"):
        bad = await controller.request("GET", f"/job?{query}")
        assert bad.status == 400, query


async def test_agent_dying_mid_job_is_no_reply_at_the_deadline(
    make_controller: MakeController, live_agent_process: LiveAgentProcess, started: Fifo
) -> None:
    controller = await make_controller(delivery_margin_s=0.5)
    doomed = await live_agent_process(controller, "doomed")
    # The command says its pid through the FIFO once it runs (the job was
    # acknowledged by then), then sleeps; the test kills the agent right then.
    script = f"echo $$ > {started.path}; exec sleep 300"
    pending = asyncio.ensure_future(
        controller.exec("doomed", {"command": "sh", "args": ["-c", script], "timeout": 2})
    )
    orphan = int((await started.lines(1))[0])
    await asyncio.to_thread(doomed.stop, signum=signal.SIGKILL)
    response = await pending
    os.killpg(orphan, signal.SIGKILL)  # the agent died before it could kill it
    [result] = response.body["results"]
    assert result["status"] == "no_reply"
    assert result["error"] == "acknowledged, but no result recorded within 2.5s"
    assert response.body["complete"] is True
    job = await controller.request("GET", f"/job/{response.body['job_id']}")
    assert job.body["state"] == "failed"
    assert job.body["results"] == response.body["results"]
