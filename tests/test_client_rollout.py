"""nexec.Client and nexec.SyncClient: ``rollout=``, ``dry_run=``, ``pause()``,
``resume()``, ``fleet()`` and ``cancel_all()`` against a real controller, real agents and
real NATS. Each run appends its host to a file; the tests count those lines."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import nexec
from schemas.api import CancelAllResponse, DryRunResponse, ExecResponse, FleetStatus, JobState
from tests.helpers import Controller, Fifo, MakeAgent, ran_on, shell_fleet

HOSTS = ("web1", "web2", "web3")
FAST = nexec.RetryPolicy(backoff_s=(0.01, 0.01, 0.01))


@pytest.fixture
async def fleet(controller: Controller, make_agent: MakeAgent) -> Controller:
    """Agents web1..web3 (label role:web, shell allowed), each with ``$NEXEC_HOST``."""
    await shell_fleet(controller, make_agent, HOSTS)
    return controller


async def test_a_rollout_as_a_dict_and_as_a_struct(fleet: Controller, tmp_path: Path) -> None:
    log = tmp_path / "runs"
    line = f'echo "$NEXEC_HOST" >> {log}; [ "$NEXEC_HOST" != web2 ]'
    async with nexec.Client(fleet.url, fleet.api_key, retry=FAST) as client:
        stopped = await client.shell("role:web", line, rollout={"batch_size": 1, "max_failures": 0})
        assert isinstance(stopped, ExecResponse)
        assert [r.status for r in stopped.results] == ["completed", "completed", "skipped"]
        assert ran_on(log) == ["web1", "web2"]
        view = await client.job(stopped.job_id)
        assert view.state is JobState.STOPPED
        assert view.rollout is not None and view.rollout.skipped == 1
        typed = nexec.Rollout(batch_size="50%", max_failures=1)
        tolerated = await client.exec("role:web", "true", rollout=typed)
        assert [r.status for r in tolerated.results] == ["completed"] * 3
        with pytest.raises(nexec.BadRequest, match="rollout"):
            await client.exec("role:web", "true", rollout={"batch_size": 0})


async def test_a_dry_run_answers_the_hosts_and_runs_nothing(
    fleet: Controller, tmp_path: Path
) -> None:
    log = tmp_path / "runs"
    async with nexec.Client(fleet.url, fleet.api_key, retry=FAST) as client:
        plan = await client.shell(
            "role:web", f"echo x >> {log}", dry_run=True, rollout={"batch_size": 2}
        )
        assert plan == DryRunResponse(hosts=list(HOSTS), count=3, batch_size=2)
        one = await client.exec("web1", "touch", [str(log)], dry_run=True)
        assert (one.hosts, one.count, one.batch_size) == (["web1"], 1, 1)
        assert not log.exists()
        with pytest.raises(nexec.NotFound):
            await client.exec("web9", "true", dry_run=True)


async def test_pause_refuses_without_retrying_until_resume(fleet: Controller) -> None:
    retries: list[nexec.Retrying] = []
    async with nexec.Client(
        fleet.url, fleet.api_key, retry=FAST, on_retry=retries.append
    ) as client:
        assert await client.fleet() == FleetStatus(paused=None)
        paused = await client.pause()
        assert paused.paused is not None and paused.paused.by == "admin"
        assert (await client.fleet()).paused == paused.paused
        with pytest.raises(nexec.ServiceUnavailable) as refused:
            await client.exec("web1", "true")
        assert refused.value.details == "the fleet is paused by admin"
        assert retries == []  # a pause lasts until an operator resumes: not retried
        assert await client.resume() == FleetStatus(paused=None)
        ran = await client.exec("web1", "true")
        assert ran.results[0].status == "completed"


async def test_cancel_all_cancels_a_running_job(
    fleet: Controller, tmp_path: Path, started: Fifo
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    line = f"echo go > {started.path}; while [ -d {gate} ]; do sleep 0.05; done"
    async with nexec.Client(fleet.url, fleet.api_key, retry=FAST) as client:
        accepted = await client.shell("web1", line, wait=False)
        await started.lines(1)
        answer = await client.cancel_all()
        assert answer == CancelAllResponse(job_ids=[accepted.job_id], complete=True)
        async for _ in client.output(accepted.job_id):
            pass
        view = await client.job(accepted.job_id)
        assert [r.status for r in view.results] == ["cancelled"]


async def test_the_sync_client_has_them_too(fleet: Controller) -> None:
    def script() -> None:
        with nexec.SyncClient(fleet.url, fleet.api_key, retry=FAST) as client:
            plan = client.exec("role:web", "true", dry_run=True)
            assert isinstance(plan, DryRunResponse) and plan.count == 3
            ran = client.shell("role:web", "true", rollout=nexec.Rollout(batch_size=2))
            assert [r.status for r in ran.results] == ["completed"] * 3
            assert client.pause().paused is not None
            assert client.fleet().paused is not None
            assert client.resume().paused is None
            assert client.cancel_all() == CancelAllResponse(job_ids=[], complete=True)

    await asyncio.to_thread(script)


def test_the_retry_rule_leaves_a_paused_fleet_alone() -> None:
    policy = nexec.RetryPolicy()
    paused = nexec.ServiceUnavailable(503, "fleet paused", "the fleet is paused by oncall")
    assert policy.delay_s(0, paused) is None
    assert policy.delay_s(0, nexec.ServiceUnavailable(503, "NATS unavailable", "d")) == 0.5
