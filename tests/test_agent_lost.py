"""A dead agent is known in seconds, even mid-job, and only a dead agent: agents report
the jobs they hold, a controller gives up on a host that fell silent (``no_reply``,
"agent lost while running") before the deadline, but never while NATS is frozen, never
while the host keeps reporting, and never on the word of another host. (The agent
killed with SIGKILL, and its orphan, are in test_agent_orphans.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client

from controller.appkeys import AGENT_WATCH, DISPATCHER
from controller.jobs.agent_watch import AGENT_LOST, AgentWatch
from schemas.messages import RunningReport, encode
from schemas.subjects import Subjects
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
    NatsServer,
    Response,
    until,
)
from tests.test_frozen_nats import frozen

LOST_AFTER_S = 1.0
REPORT_INTERVAL_S = 0.1
GATED = 'while [ -d "$0" ]; do sleep 0.05; done; echo real'
SUBJECTS = Subjects()


def watch_of(controller: Controller) -> AgentWatch:
    return controller.app[AGENT_WATCH]


def acked_job(controller: Controller, hostname: str) -> str | None:
    """The id of a job being collected that ``hostname`` acknowledged, if any."""
    collectors = controller.app[DISPATCHER].collectors
    return next((job_id for job_id, c in collectors.items() if hostname in c.acked), None)


@contextlib.asynccontextmanager
async def gated_exec(
    controller: Controller, target: str, gate: Path
) -> AsyncIterator[asyncio.Task[Response]]:
    """An exec on ``target`` of a job that runs until ``gate`` is removed (the caller
    does that); the answer's future, once ``target`` acknowledged it."""
    os.mkdir(gate)
    body = {"command": "sh", "args": ["-c", GATED, str(gate)], "timeout": 60}
    answer = asyncio.create_task(controller.exec(target, body))
    try:
        await until(lambda: acked_job(controller, target) is not None)
        yield answer
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(gate)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)


async def test_a_frozen_nats_server_never_makes_an_agent_lost(
    nats_server: NatsServer, make_controller: MakeController, live_agent: LiveAgent, tmp_path: Path
) -> None:
    controller = await make_controller(agent_lost_after_s=LOST_AFTER_S)
    await live_agent(controller, "steady", running_report_interval_s=REPORT_INTERVAL_S)
    watch = watch_of(controller)
    gate = tmp_path / "gate"
    async with gated_exec(controller, "steady", gate) as answer:
        with frozen(nats_server):
            # Frozen until the watch has seen the host silent for longer than the
            # threshold (and held back its verdict).
            await until(lambda: watch.withheld > 0)
        os.rmdir(gate)
        response = await answer
    [result] = response.body["results"]
    assert (result["status"], result["stdout"]) == ("completed", "real\n"), result
    assert watch.lost == 0


async def test_a_host_that_keeps_reporting_is_never_lost(
    make_controller: MakeController, live_agent: LiveAgent, tmp_path: Path
) -> None:
    """Alone in the fleet, with its heartbeats far apart: only its reports keep it."""
    controller = await make_controller(agent_lost_after_s=LOST_AFTER_S)
    await live_agent(controller, "busy", running_report_interval_s=REPORT_INTERVAL_S)
    watch = watch_of(controller)
    async with gated_exec(controller, "busy", tmp_path / "gate") as answer:
        # Reports over three times the threshold while the job runs.
        await until(lambda: watch.reports >= 3 * LOST_AFTER_S / REPORT_INTERVAL_S)
        os.rmdir(tmp_path / "gate")
        response = await answer
    [result] = response.body["results"]
    assert (result["status"], result["stdout"]) == ("completed", "real\n"), result
    assert watch.lost == 0


async def test_forged_reports_do_not_keep_a_killed_agent_alive(
    make_controller: MakeController, live_agent_process: LiveAgentProcess, nc: Client, started: Fifo
) -> None:
    """Another host's reports listing the job, or naming the dead host, count for nothing
    (reports on the dead host's own subject are for the NATS permissions to refuse:
    test_nats_permissions)."""
    controller = await make_controller(agent_lost_after_s=LOST_AFTER_S)
    agent = await live_agent_process(
        controller, "victim", "--running-report-interval", str(REPORT_INTERVAL_S)
    )
    script = f"echo $$ > {started.path}; exec sleep 300"
    answer = asyncio.create_task(
        controller.exec("victim", {"command": "sh", "args": ["-c", script], "timeout": 300})
    )
    [line] = await started.lines(1)
    group = int(line)
    await until(lambda: acked_job(controller, "victim") is not None)
    job_id = acked_job(controller, "victim")
    assert job_id is not None

    async def forge() -> None:
        while True:
            for hostname in ("victim", "forger"):  # naming the victim; listing its job
                report = RunningReport(hostname=hostname, job_ids=[job_id])
                await nc.publish(SUBJECTS.running("forger"), encode(report))
            await asyncio.sleep(REPORT_INTERVAL_S / 2)  # a forger's pace, not a wait

    forger = asyncio.create_task(forge())
    try:
        await asyncio.to_thread(agent.stop, signum=signal.SIGKILL)
        response = await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)
    finally:
        forger.cancel()
        await asyncio.wait({forger})
        os.killpg(group, signal.SIGKILL)
    [result] = response.body["results"]
    assert result["status"] == "no_reply"
    assert result["error"].startswith(AGENT_LOST), result
    assert watch_of(controller).dropped["invalid running report"] > 0


async def test_a_host_whose_result_is_recorded_is_not_lost_while_results_lag(
    make_controller: MakeController, live_agent: LiveAgent, nc: Client, tmp_path: Path
) -> None:
    """The host's result is in the results stream, but this controller's consumer of
    them is being made again (as after a stream leader's loss): the host stopped
    reporting the job (JetStream took its result), which is not an agent lost. The
    record decides: the caller gets the recorded result."""
    controller = await make_controller(agent_lost_after_s=LOST_AFTER_S)
    await live_agent(controller, "other", heartbeat_interval_s=REPORT_INTERVAL_S)
    await live_agent(controller, "done", running_report_interval_s=REPORT_INTERVAL_S)
    js = nc.jetstream()
    async with gated_exec(controller, "done", tmp_path / "gate") as answer:
        for consumer in await js.consumers_info(SUBJECTS.results_stream()):
            await js.delete_consumer(SUBJECTS.results_stream(), consumer.name)
        os.rmdir(tmp_path / "gate")
        response = await answer
    [result] = response.body["results"]
    assert (result["status"], result["stdout"]) == ("completed", "real\n"), result
    assert watch_of(controller).lost == 0


async def test_a_host_flooding_its_reports_holds_back_every_verdict_while_it_floods(
    make_controller: MakeController, live_agent_process: LiveAgentProcess, nc: Client, started: Fifo
) -> None:
    """A host floods its own running subject, so that reports are dropped (the report
    subscription holds few unread here): the silent host stands for one whose reports
    the flood dropped. It is not given up while the flood lasts, only after it."""
    controller = await make_controller(
        agent_lost_after_s=LOST_AFTER_S, running_reports_pending_msgs=8
    )
    agent = await live_agent_process(
        controller, "quiet", "--running-report-interval", str(REPORT_INTERVAL_S)
    )
    script = f"echo $$ > {started.path}; exec sleep 300"
    answer = asyncio.create_task(
        controller.exec("quiet", {"command": "sh", "args": ["-c", script], "timeout": 300})
    )
    [line] = await started.lines(1)
    group = int(line)
    await until(lambda: acked_job(controller, "quiet") is not None)
    watch = watch_of(controller)
    flood = encode(RunningReport(hostname="flooder", job_ids=[f"job-{n}" for n in range(50)]))

    stop = asyncio.Event()  # not a cancel: nats-py's flush can swallow one

    async def flooder() -> None:
        while not stop.is_set():
            for _ in range(500):
                await nc.publish(SUBJECTS.running("flooder"), flood)
            await nc.flush()

    flooding = asyncio.create_task(flooder())
    try:
        await asyncio.to_thread(agent.stop, signum=signal.SIGKILL)
        # Three windows' worth of checks found the host silent and held back.
        await until(lambda: watch.withheld >= 3 * 6 or watch.lost > 0)
        assert (watch.lost, answer.done()) == (0, False)
        assert watch.backed_up > 0
    finally:
        stop.set()
        await asyncio.wait_for(flooding, STARTUP_TIMEOUT_S)
    try:
        response = await asyncio.wait_for(answer, STARTUP_TIMEOUT_S)
    finally:
        os.killpg(group, signal.SIGKILL)
    [result] = response.body["results"]
    assert (result["status"], result["error"].startswith(AGENT_LOST)) == ("no_reply", True)
