"""When JetStream does not take a record: a job record stops the job (503, nothing
runs), a result record is counted and the host is no_reply (the caller sees only
recorded results), an audit record stops the request that would act (503, nothing
runs) and is counted and logged in full for a request refused before acting. Each
stream is deleted under a running system."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from agentd.agent import Agent
from controller.app_nats import ensure_records
from controller.appkeys import AUDIT
from schemas.subjects import Subjects
from tests.helpers import Controller, LiveAgent, MakeController, recorded_result

SUBJECTS = Subjects("nexec")


async def running_without(
    stream: str, nc: Client, make_controller: MakeController, live_agent: LiveAgent
) -> tuple[Controller, Agent]:
    """A controller and agent ``a1`` that both saw each other, then ``stream`` deleted."""
    controller = await make_controller()
    agent = await live_agent(controller, "a1")
    await nc.jetstream().delete_stream(stream)
    return controller, agent


async def test_a_job_record_that_cannot_be_written_is_503_and_nothing_runs(
    nc: Client, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller, agent = await running_without(
        SUBJECTS.jobs_stream(), nc, make_controller, live_agent
    )

    response = await controller.exec("a1", {"command": "true"})

    assert response.status == 503, response.body
    assert "recording the job failed" in response.body["details"]
    assert agent.counters.received == 0


async def test_a_result_that_cannot_be_recorded_yet_is_retried_until_it_is(
    nc: Client, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    # The test remakes the stream. The agent, reporting the job until its result is
    # recorded, is never given up as lost meanwhile.
    controller = await make_controller(
        state_check_interval_s=3600, agent_lost_after_s=0.5, delivery_margin_s=0.5
    )
    agent = await live_agent(controller, "a1", result_retry_s=60, running_report_interval_s=0.1)
    await nc.jetstream().delete_stream(SUBJECTS.results_stream())

    response = await controller.exec(
        "a1", {"command": "echo", "args": ["still here"], "timeout": 1}
    )

    # The caller sees only recorded results: the host took the job, no result is known.
    assert response.status == 202, response.body
    [result] = response.body["results"]
    assert result["status"] == "no_reply"
    assert result["error"].startswith("acknowledged, but no result recorded within")
    # The stream comes back (as a controller makes it again): the agent's next try lands.
    await ensure_records(controller.app)
    recorded = await recorded_result(nc, response.body["job_id"], "a1")
    assert recorded["stdout"] == "still here\n"
    assert agent.records_lost == 0


async def test_an_exec_whose_audit_record_cannot_be_stored_is_503_and_nothing_runs(
    nc: Client, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller, agent = await running_without(
        SUBJECTS.audit_stream(), nc, make_controller, live_agent
    )

    response = await controller.exec("a1", {"command": "true"})

    assert response.status == 503, response.body
    assert "recording the audit record failed" in response.body["details"]
    assert agent.counters.received == 0


async def test_a_refusal_whose_audit_record_cannot_be_stored_is_counted_and_logged(
    nc: Client,
    make_controller: MakeController,
    live_agent: LiveAgent,
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller, _ = await running_without(SUBJECTS.audit_stream(), nc, make_controller, live_agent)

    response = await controller.exec("a1", {"command": "true"}, key="nxk_unknown")
    await controller.app[AUDIT].flushed()

    assert response.status == 401, response.body
    assert controller.app[AUDIT].lost == 1
    [logged] = [r.getMessage() for r in caplog.records if "audit record not stored" in r.message]
    assert '"status":401' in logged  # the whole record, in the log
