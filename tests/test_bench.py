"""The tiny benchmark runs in the suite so it never rots (numbers are not checked here).

It starts a stack per measure and, on a fresh machine, the browser for the first time:
~25 s here, more on a busy machine, so it has a limit of its own; the run is stopped
before pytest's limit so its own output (each measure's time) shows where it stood.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN_LIMIT_S = 240


@pytest.mark.timeout(RUN_LIMIT_S + 30)
def test_quick_benchmark_runs_and_every_agent_answers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f"the quick benchmark ran past {RUN_LIMIT_S} s:\n{stderr[-3000:]}")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "N3 _all to 10 agents" in completed.stdout
    report = json.loads(out.read_text())
    nexec = report["nexec"]
    assert nexec["N3_all"]["10"]["results"] == {"completed": 10 * report["sizes"]["repeats"]}
    assert nexec["N1"]["c32"]["statuses"] == {"202": 10}
    assert nexec["N2_any_c32"]["results"] == {"completed": 10}
    assert nexec["N5_many_hosts"]["results"] == {"completed": 10 * report["sizes"]["repeats"]}
    assert {row["name"] for row in report["comparison"]} >= {"N4 idle agent RSS"}
    assert set(nexec["N6_cli"]) >= {"python_bare", "python_aiohttp_request", "nexec_exec"}
    assert set(nexec["N9_console"]) >= {"render_p50_ms", "panels_in_page"} or nexec[
        "N9_console"
    ] == {"skipped": "no chromium"}
    rollout = nexec["N7_rollout"]
    every = {"completed": rollout["hosts"] * report["sizes"]["repeats"]}
    assert rollout["plain"]["results"] == rollout["rollout"]["results"] == every
    metrics = nexec["N8_metrics"]
    assert len(metrics["runs"]["on"]) == len(metrics["runs"]["off"]) == 2
    assert "N8 controller CPU per N2 request, metrics on" in completed.stdout
