"""``python -m bench [--quick] [--out FILE]``: run every floor and nexec measure, print
the table, write the JSON. See docs/performance.md for what each line means."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.cli import measure_cli_alone
from bench.console import measure_console_alone
from bench.floors import measure_floors
from bench.measures import Sizes, measure_nexec
from bench.metrics_overhead import measure_metrics_overhead_alone
from bench.report import compare, render_table
from bench.rollout import measure_rollout_alone

T = TypeVar("T")


def _stage(name: str, measure: Callable[[Sizes], T], sizes: Sizes) -> T:
    """Run one measure and say on stderr how long it took, so a run that is slow or
    stuck shows where."""
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    result = measure(sizes)
    print(f"bench: {name} took {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="N of 10, a few seconds")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes.full()
    floors = _stage("floors", measure_floors, sizes)
    nexec: dict[str, Any] = _stage("N1-N5", measure_nexec, sizes)
    nexec["N6_cli"] = _stage("N6 cli", measure_cli_alone, sizes)
    nexec["N7_rollout"] = _stage("N7 rollout", measure_rollout_alone, sizes)
    nexec["N8_metrics"] = _stage("N8 metrics", measure_metrics_overhead_alone, sizes)
    nexec["N9_console"] = _stage("N9 console", measure_console_alone, sizes)
    comparison = compare(floors, nexec, sizes)
    print(render_table(comparison))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"sizes": sizes.as_dict(), "floors": floors, "nexec": nexec, "comparison": comparison}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
