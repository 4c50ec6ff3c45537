"""The systemd units in deploy/systemd pass ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

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
    assert "TimeoutStopSec=45s" in agent  # > the longest agent stop, 37 s
    assert "KillMode=mixed" in agent  # SIGTERM to the agent alone: it drains its jobs
    assert "TimeoutStopSec=330s" in controller  # > 300 s timeout + delivery margin
