"""The tiny benchmark runs in the suite so it never rots (numbers are not checked here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_benchmark_runs_and_every_agent_answers(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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
