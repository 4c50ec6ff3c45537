"""deploy/: the systemd units pass ``systemd-analyze verify``; ``nexec nats-auth``
writes its secrets privately, where git ignores them."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from nexec.cli import main as cli_main
from runtime.signing import JobSigner
from tests.helpers import Controller, Fifo, LiveAgentProcess

DEPLOY = Path(__file__).parent.parent / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("unit", ["nexec-agentd.service", "nexec-controller.service"])
def test_systemd_unit_verifies(unit: str, tmp_path: Path) -> None:
    text = (DEPLOY / "systemd" / unit).read_text()
    assert "Restart=on-failure" in text
    assert "TimeoutStopSec=" in text
    # Point ExecStart at this environment's scripts and the example config files.
    scripts = sysconfig.get_path("scripts")
    text = text.replace("/usr/local/bin/", f"{scripts}/").replace(
        "/etc/nexec/", f"{DEPLOY / 'examples'}/"
    )
    checked = tmp_path / unit
    checked.write_text(text)
    completed = subprocess.run(
        ["systemd-analyze", "verify", str(checked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.strip() == "", completed.stderr


def test_stop_timeouts_outlast_the_drains() -> None:
    agent = (DEPLOY / "systemd" / "nexec-agentd.service").read_text()
    controller = (DEPLOY / "systemd" / "nexec-controller.service").read_text()
    assert "TimeoutStopSec=45s" in agent  # > the longest agent stop, 42 s
    assert "KillMode=control-group" in agent  # nothing of the agent's survives a stop
    assert "TimeoutStopSec=330s" in controller  # > 300 s timeout + delivery margin


def test_nats_auth_writes_private_files_that_git_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "generated"
    assert cli_main(["nats-auth", "--out", str(out), "--agent", "web1.example.com,role:web",
                     "--tls-host", "127.0.0.1"]) == 0  # fmt: skip
    printed = {Path(line).name for line in capsys.readouterr().out.split()}
    assert {"auth.conf", "tls.conf", "controller.nk", "publisher.nk", "controller.env",
            "publisher.env", "agent-web1_2Eexample_2Ecom.env"} <= printed  # fmt: skip
    for path in out.rglob("*"):
        if path.is_file() and not (path.suffix == ".pem" and not path.stem.endswith("key")):
            assert path.stat().st_mode & 0o077 == 0, path  # secrets: readable by the owner only
    assert (out / "tls" / "ca.pem").stat().st_mode & 0o777 == 0o644  # public
    agent_env = (out / "agent-web1_2Eexample_2Ecom.env").read_text()
    controller_public = JobSigner.from_file(out / "controller.nk").public_key
    publisher_public = JobSigner.from_file(out / "publisher.nk").public_key
    assert f"NEXEC_TRUSTED_SIGNERS={controller_public},{publisher_public}\n" in agent_env
    assert f"NEXEC_NATS_TLS_CERT_FILE={out}/tls/client-agent-web1_2Eexample_2Ecom.pem" in agent_env
    controller_env = (out / "controller.env").read_text()
    assert f"NEXEC_JOB_SIGNING_KEY_FILE={out}/controller.nk\n" in controller_env
    gitignore = (DEPLOY.parent / ".gitignore").read_text().splitlines()
    assert "/deploy/nats/generated/" in gitignore, "generated secrets must stay out of git"


def test_nats_auth_never_replaces_secrets_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "generated"
    assert cli_main(["nats-auth", "--out", str(out), "--tls-host", "127.0.0.1"]) == 0
    first_seed = (out / "controller.nk").read_text()
    assert cli_main(["nats-auth", "--out", str(out), "--tls-host", "127.0.0.1"]) == 1
    assert "already holds generated secrets" in capsys.readouterr().err
    assert (out / "controller.nk").read_text() == first_seed
    assert cli_main(["nats-auth", "--out", str(out), "--tls-host", "127.0.0.1", "--replace"]) == 0
    assert (out / "controller.nk").read_text() != first_seed


def exec_stop_command(unit: str) -> list[str]:
    """The unit's ``ExecStop=`` as the process systemd runs (``$$`` is a literal ``$``)."""
    text = (DEPLOY / "systemd" / unit).read_text()
    [line] = [line for line in text.splitlines() if line.startswith("ExecStop=")]
    return shlex.split(line.removeprefix("ExecStop=").replace("$$", "$"))


async def test_the_agent_units_stop_drains_the_agent_before_the_group_is_killed(
    controller: Controller, live_agent_process: LiveAgentProcess, started: Fifo
) -> None:
    """ExecStop sends SIGTERM to the agent alone and returns once it has exited, so its
    jobs finish (the drain) before KillMode=control-group signals what is left."""
    agent = await live_agent_process(controller, "unit-stopped")
    pending = asyncio.ensure_future(controller.exec("unit-stopped", {
        "command": "sh", "args": ["-c", f"echo go > {started.path}; sleep 1; echo drained"],
    }))  # fmt: skip
    await started.lines(1)  # the job is running
    # The test reaps the agent as systemd, its parent there, would the moment it exits.
    reaped = asyncio.ensure_future(asyncio.to_thread(agent.popen.wait, 30))
    stop = await asyncio.create_subprocess_exec(
        *exec_stop_command("nexec-agentd.service"),
        env={"MAINPID": str(agent.pid), "PATH": os.environ["PATH"]},
    )
    assert await asyncio.wait_for(stop.wait(), 30) == 0
    assert agent.popen.returncode == 0  # ExecStop returned only once the agent had exited
    assert await reaped == 0
    [result] = (await pending).body["results"]
    assert (result["status"], result["stdout"]) == ("completed", "drained\n")
