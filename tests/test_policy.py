"""The shell endpoint and the agent's policy: shell, allowed commands, environment, user;
a job that expires in the queue; an agent drained mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
from pathlib import Path

import nats
import pytest

from schemas.subjects import Subjects
from tests.helpers import (
    Controller,
    Fifo,
    LiveAgent,
    LiveAgentProcess,
    MakeController,
    NatsServer,
    gated,
)


async def shell(controller: Controller, target: str, command: str, **fields: object) -> dict:
    response = await controller.request(
        "POST", f"/node/{target}/command/shell", json={"command": command, **fields}
    )
    assert response.status == 202, response.body
    [result] = response.body["results"]
    return result


async def test_shell_runs_where_the_policy_allows_it(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "sh-ok", allow_shell=True)
    await live_agent(controller, "sh-no")
    allowed = await shell(controller, "sh-ok", "echo $((1+2)) | tr 3 x; exit 4")
    assert (allowed["status"], allowed["stdout"], allowed["exit_code"]) == ("completed", "x\n", 4)
    refused = await shell(controller, "sh-no", "echo should-not-run")
    assert refused["status"] == "failed"
    assert refused["changed"] is False
    assert refused["error"] == "refused by policy: shell is not allowed on this agent (allow_shell)"


async def test_shell_needs_its_own_permission(
    make_controller: MakeController, live_agent: LiveAgent
) -> None:
    controller = await make_controller(keys={"exec-only": (["command:exec"], [])})
    await live_agent(controller, "h1", allow_shell=True)
    response = await controller.request(
        "POST", "/node/h1/command/shell", json={"command": "id"},
        key=controller.extra_keys["exec-only"],
    )  # fmt: skip
    assert response.status == 403
    assert "command:shell" in response.body["details"]
    bad = await controller.request(
        "POST", "/node/h1/command/shell", json={"command": "id", "args": []}
    )
    assert bad.status == 400
    assert "unknown field `args`" in bad.body["details"]


async def test_allowed_commands_refuse_rm_and_allow_ls(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await live_agent(controller, "locked", allowed_commands=["ls"])
    precious = tmp_path / "box" / "precious"
    precious.parent.mkdir()
    precious.write_text("keep")
    listed = await controller.exec("locked", {"command": "ls", "args": [str(precious.parent)]})
    assert listed.body["results"][0]["stdout"] == "precious\n"
    removed = await controller.exec("locked", {"command": "/bin/rm", "args": [str(precious)]})
    [result] = removed.body["results"]
    assert result["status"] == "failed"
    assert result["error"] == "refused by policy: '/bin/rm' is not in allowed_commands"
    assert precious.read_text() == "keep"


async def test_jobs_get_a_clean_environment_plus_the_request_env(
    controller: Controller, live_agent: LiveAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXEC_TEST_AGENT_SECRET", "do-not-leak")
    await live_agent(controller, "envy")
    await live_agent(controller, "strict", allow_request_env=False)
    response = await controller.exec("envy", {"command": "env", "env": {"GREETING": "hi"}})
    lines = set(response.body["results"][0]["stdout"].splitlines())
    assert "GREETING=hi" in lines
    assert "LANG=C.UTF-8" in lines
    assert not any(line.startswith("NEXEC_TEST_AGENT_SECRET") for line in lines)
    refused = await controller.exec("strict", {"command": "env", "env": {"A": "1"}})
    assert refused.body["results"][0]["error"] == (
        "refused by policy: per-request env is not allowed (allow_request_env)"
    )
    invalid = await controller.exec("envy", {"command": "env", "env": {"1BAD": "x"}})
    assert invalid.status == 400
    assert "invalid variable name '1BAD'" in invalid.body["details"]


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
async def test_jobs_run_as_the_configured_user(
    controller: Controller, live_agent: LiveAgent
) -> None:
    nobody = pwd.getpwnam("nobody")
    await live_agent(controller, "as-nobody", run_as_user="nobody")
    response = await controller.exec("as-nobody", {"command": "id", "args": ["-u"], "cwd": "/"})
    assert response.body["results"][0]["stdout"] == f"{nobody.pw_uid}\n"


async def test_a_job_that_expires_in_the_queue_never_runs(
    make_controller: MakeController,
    live_agent: LiveAgent,
    nats_server: NatsServer,
    started: Fifo,
    tmp_path: Path,
) -> None:
    controller = await make_controller(delivery_margin_s=0.5)
    await live_agent(controller, "busy", max_concurrent_jobs=1)
    gate, marker = tmp_path / "gate", tmp_path / "ran"
    gate.mkdir()
    holder = asyncio.ensure_future(controller.exec("busy", {
        "command": "sh",
        "args": ["-c", f"echo go > {started.path}; while [ -d {gate} ]; do sleep 0.05; done"],
        "timeout": 60,
    }))  # fmt: skip
    await started.lines(1)  # the holder has the only slot
    # Waits behind the holder past its own deadline (1 s + 0.5 s margin).
    queued = await controller.exec(
        "busy", {"command": "touch", "args": [str(marker)], "timeout": 1}
    )
    assert queued.body["results"][0]["status"] == "no_reply"
    gate.rmdir()
    assert (await holder).body["results"][0]["status"] == "completed"
    # The agent then takes the queued job, finds it expired and records that,
    # replacing the no_reply the controller recorded at the deadline.
    client = await nats.connect(nats_server.url)
    try:
        subscription = await client.jetstream().subscribe(
            Subjects().result_record(queued.body["job_id"], "busy"), ordered_consumer=True
        )
        recorded = json.loads((await subscription.next_msg(timeout=20)).data)
        while recorded["status"] == "no_reply":
            recorded = json.loads((await subscription.next_msg(timeout=20)).data)
    finally:
        await client.close()
    assert recorded["status"] == "failed"
    assert recorded["error"] == "expired before start: its deadline passed"
    assert not marker.exists()


async def test_an_agent_drained_mid_job_returns_its_result_before_exiting(
    controller: Controller, live_agent_process: LiveAgentProcess, started: Fifo, tmp_path: Path
) -> None:
    agent = await live_agent_process(controller, "draining")
    gate = tmp_path / "gate"
    gate.mkdir()
    pending = asyncio.ensure_future(controller.exec("draining", {
        "command": "sh", "args": ["-c", f"echo go > {started.path}; {gated(gate)}; echo finished"],
    }))  # fmt: skip
    await started.lines(1)  # the job is running
    agent.popen.send_signal(signal.SIGTERM)
    # Draining: the agent left the registry first, and its job runs on.
    await controller.registry.wait_until(
        lambda registry: not any(hb.hostname == "draining" for hb in registry.live()), 10
    )
    assert not pending.done()
    gate.rmdir()
    response = await pending
    [result] = response.body["results"]
    assert (result["status"], result["stdout"]) == ("completed", "finished\n")
    assert await asyncio.to_thread(agent.popen.wait, 30) == 0


async def test_the_allowlist_cannot_be_bypassed_by_env_or_relative_paths(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await live_agent(controller, "locked", allowed_commands=["echo"])
    fake = tmp_path / "bin" / "echo"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\ntouch pwned\n")
    fake.chmod(0o755)
    attempts = [
        ({"command": "echo", "env": {"PATH": str(fake.parent)}}, "may not set PATH"),
        ({"command": "echo", "env": {"LD_PRELOAD": "/tmp/x.so"}}, "may not set LD_PRELOAD"),
        ({"command": "bin/echo", "cwd": str(tmp_path)}, "a relative path cannot be checked"),
    ]
    for body, reason in attempts:
        response = await controller.exec("locked", body)
        [result] = response.body["results"]
        assert result["status"] == "failed", body
        assert reason in result["error"]
    allowed = await controller.exec("locked", {"command": "echo", "args": ["ok"]})
    assert allowed.body["results"][0]["stdout"] == "ok\n"
    assert not (tmp_path / "pwned").exists()
