"""Ratios against the floors, the targets of issue 4, and the printed table."""

from __future__ import annotations

from typing import Any

from bench.common import Sizes

Row = dict[str, Any]


def _row(
    name: str, nexec: float, floor: float | None, unit: str, *, target: str, ok: bool | None
) -> Row:
    ratio = nexec / floor if floor else None
    return {"name": name, "nexec": nexec, "floor": floor, "unit": unit, "ratio": ratio,
            "target": target, "met": ok}  # fmt: skip


def compare(floors: dict[str, Any], nexec: dict[str, Any], sizes: Sizes) -> list[Row]:
    """One row per measure: the nexec figure, its floor, the ratio and the target."""
    f1, f2 = floors["F1_spawn"], floors["F2_round_trip"]
    n1, n2 = nexec["N1"], nexec["N2_any_c32"]
    latency_floor = f1["c1"]["p50_ms"] + f2["c1"]["p50_ms"]
    rows = [
        _row("N1 one host /bin/true, runs/s at c=32", n1["c32"]["rps"],
             f1["c32"]["runs_per_s"], "runs/s", target=">= 0.75 x F1",
             ok=n1["c32"]["rps"] >= 0.75 * f1["c32"]["runs_per_s"]),
        _row("N1 one host /bin/true, p50 at c=1", n1["c1"]["p50_ms"], latency_floor, "ms",
             target="<= F1 p50 + F2 p50 + 1 ms", ok=n1["c1"]["p50_ms"] <= latency_floor + 1),
        _row("N1 one host /bin/true, p99 at c=1", n1["c1"]["p99_ms"], None, "ms",
             target="-", ok=None),
        _row("N2 _any, 3 no-spawn agents, req/s at c=32", n2["rps"], f2["c32"]["rps"], "req/s",
             target=">= 0.5 x F2", ok=n2["rps"] >= 0.5 * f2["c32"]["rps"]),
    ]  # fmt: skip
    rows += _fleet_rows(floors["F3_fanout"], nexec["N3_all"])
    rows += _memory_and_output_rows(nexec, sizes)
    rows += _cli_rows(nexec["N6_cli"])
    rows += _rollout_rows(nexec["N7_rollout"])
    rows += _metrics_rows(nexec["N8_metrics"])
    rows += _console_rows(nexec.get("N9_console", {}))
    return rows


def _metrics_rows(metrics: dict[str, Any]) -> list[Row]:
    """N8: the controller's CPU per N2 request with metrics on; its floor, the same with
    them off (medians of runs taking turns). Target: within 5 %."""
    on, off = metrics["on_cpu_us_per_request"], metrics["off_cpu_us_per_request"]
    return [
        _row("N8 controller CPU per N2 request, metrics on", on, off, "us",
             target="<= 1.05 x metrics off", ok=on <= 1.05 * off),
    ]  # fmt: skip


def _console_rows(console: dict[str, Any]) -> list[Row]:
    """N9: the web console drawing one job's every host (none without a browser). The
    target: the page holds only the panels in view (no freezing however many hosts)."""
    if "render_p50_ms" not in console:
        return []
    hosts = console["hosts"]
    return [
        _row(f"N9 console: a {hosts}-host job drawn, p50", console["render_p50_ms"],
             console["get_job_p50_ms"], "ms", target="- (floor: GET /job/{id})", ok=None),
        _row(f"N9 console: host panels in the page ({hosts} hosts)", console["panels_in_page"],
             None, "", target="<= 50 (virtualised)", ok=console["panels_in_page"] <= 50),
        _row("N9 console: scroll to the last host", console["scroll_to_last_ms"], None, "ms",
             target="-", ok=None),
    ]  # fmt: skip


def _rollout_rows(rollout: dict[str, Any]) -> list[Row]:
    """N7: a rollout against the same job without one. Its CPU target: at most 2x a plain
    job's controller CPU per host, every host completed."""
    plain, rolled = rollout["plain"], rollout["rollout"]
    hosts, batch = rollout["hosts"], rollout["batch_size"]
    every = {"completed": hosts * rolled["runs"]}
    answered = plain["results"] == every and rolled["results"] == every
    return [
        _row(f"N7 rollout {hosts} hosts, batch {batch}, p50", rolled["p50_ms"], plain["p50_ms"],
             "ms", target="- (floor: the job without rollout)", ok=None),
        _row("N7 rollout controller CPU per host", rolled["cpu_us_per_host"],
             plain["cpu_us_per_host"], "us", target="<= 2 x without rollout, all answered",
             ok=answered and rolled["cpu_us_per_host"] <= 2 * plain["cpu_us_per_host"]),
    ]  # fmt: skip


def _cli_rows(cli: dict[str, Any]) -> list[Row]:
    """N6: the ``nexec`` command as a whole process. Its floor is ``python -c`` making the
    same request with aiohttp (start-up + request); the target allows one more bare
    interpreter start-up: ``<= 2 x bare + (python -c request - bare)``."""
    bare, request = cli["python_bare"]["p50_ms"], cli["python_aiohttp_request"]["p50_ms"]
    nexec = cli["nexec_exec"]["p50_ms"]
    rows = [
        _row("N6 nexec exec HOST -- /bin/true, process p50", nexec, request, "ms",
             target="<= 2 x bare start-up + request", ok=nexec <= bare + request),
        _row("N6 python -c pass (bare start-up), p50", bare, None, "ms", target="-", ok=None),
    ]  # fmt: skip
    if "curl" in cli:
        rows.append(_row("N6 curl, the same request, p50", cli["curl"]["p50_ms"], None, "ms",
                         target="-", ok=None))  # fmt: skip
    return rows


def _fleet_rows(fanout: dict[str, Any], fleets: dict[str, Any]) -> list[Row]:
    rows = []
    for count, run in fleets.items():
        floor = fanout.get(count, {}).get("p50_ms")
        answered = run["results"].get("completed", 0) == int(count) * run["requests"]
        met = answered and (floor is None or run["p50_ms"] <= 2 * floor)
        target = "<= 2 x F3, all answered" if floor else "all answered (no floor at this N)"
        rows.append(
            _row(
                f"N3 _all to {count} agents, p50", run["p50_ms"], floor, "ms", target=target, ok=met
            )
        )
    return rows


def _memory_and_output_rows(nexec: dict[str, Any], sizes: Sizes) -> list[Row]:
    memory = nexec["N4_controller_rss_mb"]
    checkpoint = memory[f"after_{sizes.controller_jobs_checkpoint}"]
    final = memory[f"after_{sizes.controller_jobs}"]
    idle_agent = nexec["N4_idle_agent_rss_mb"]
    many = f"N5 {sizes.output_hosts} hosts x {sizes.output_host_bytes // 1024} KB, p50"
    return [
        _row("N4 idle agent RSS", idle_agent, None, "MB", target="<= 40 MB", ok=idle_agent <= 40),
        _row("N4 controller RSS idle", memory["idle"], None, "MB", target="-", ok=None),
        _row(f"N4 controller RSS after {sizes.controller_jobs} jobs", final, checkpoint, "MB",
             target=f"within 15% of after {sizes.controller_jobs_checkpoint}",
             ok=final <= 1.15 * checkpoint),
        _row("N5 1 MB stdout from one host, p50", nexec["N5_one_host_1MB"]["p50_ms"], None,
             "ms", target="-", ok=None),
        _row(many, nexec["N5_many_hosts"]["p50_ms"], None, "ms", target="-", ok=None),
    ]  # fmt: skip


def render_table(rows: list[Row]) -> str:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    lines = [f"{'measure':<48} {'nexec':>11} {'floor':>11} {'ratio':>7}  {'target':<34} met"]
    for row in rows:
        met = {True: "yes", False: "MISS", None: ""}[row["met"]]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
        lines.append(
            f"{row['name']:<48} {number(row['nexec']):>11} {number(row['floor']):>11} "
            f"{ratio:>7}  {row['target']:<34} {met}"
        )
    return "\n".join(lines)
