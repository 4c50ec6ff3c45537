"""N9: the web console's render of one job on ``sizes.console_hosts`` simulated hosts
(1,000): the time from opening the job's view to every host's result and the grouped
view drawn (p50 of ``sizes.repeats`` openings), how many host panels the page holds
(virtualised: only those in view), and the time to scroll to the last host; its floor
is ``GET /job/{id}`` alone, which the page reads first. Headless
Chromium from the distribution, as in tests/browser/; skipped without one.

``python -m bench.console [--quick]`` runs this measure alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

from playwright.sync_api import Page, sync_playwright

from bench.common import Sizes
from bench.loadgen import percentile
from bench.measures import Stack, exec_body, measure_main, start_fleet, stop_fleets
from tests.browser.console import CHROMIUM_FLAGS, VIEWPORT, chromium_path

TARGET = "bench:ui"
WAIT_MS = 120_000


def _run_job(stack: Stack) -> str:
    """One job on every simulated host, to its complete answer; its id."""
    request = urllib.request.Request(
        stack.exec_url(TARGET),
        data=exec_body("/bin/true").encode(),
        headers={"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=WAIT_MS / 1000) as response:
        return str(json.load(response)["job_id"])


def _api_ms(stack: Stack, job_id: str) -> float:
    """ms of ``GET /job/{id}`` alone: the floor of the page's render."""
    request = urllib.request.Request(
        f"{stack.url}/job/{job_id}", headers={"Authorization": f"Bearer {stack.key}"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=WAIT_MS / 1000) as response:
        response.read()
    return (time.perf_counter() - started) * 1000


def _open_ms(page: Page, job_id: str, hosts: int) -> float:
    """Open the job's view from the job list; ms until every result and the grouped view
    are drawn (checked on every animation frame)."""
    page.evaluate("location.hash = '#/jobs'")
    page.wait_for_selector("#jobs")
    done = f"{hosts} of {hosts} hosts answered"
    started = time.perf_counter()
    page.evaluate(f"location.hash = '#/job/{job_id}'")
    page.wait_for_function(
        "done => document.querySelector('#job-counts')?.textContent === done"
        " && document.querySelector('#job-groups .group') !== null",
        arg=done, polling="raf", timeout=WAIT_MS,
    )  # fmt: skip
    return (time.perf_counter() - started) * 1000


def _scroll_ms(page: Page, last_host: str) -> float:
    started = time.perf_counter()
    page.evaluate("document.querySelector('.vlist').scrollTop = 1e9")
    page.wait_for_selector(f'.panel[data-host="{last_host}"]', timeout=WAIT_MS)
    return (time.perf_counter() - started) * 1000


def measure_console(stack: Stack, sizes: Sizes) -> dict[str, Any]:
    """N9 on ``sizes.console_hosts`` no-spawn agents labelled ``bench:ui``."""
    chromium = chromium_path()
    if chromium is None:
        return {"skipped": "no chromium"}
    hosts = sizes.console_hosts
    fleets = start_fleet(stack, hosts, "ui-", "--label", TARGET)
    try:
        stack.wait_for_agents(hosts)
        job_id = _run_job(stack)
        api = sorted(_api_ms(stack, job_id) for _ in range(sizes.repeats))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            page.goto(stack.url + "/ui/")
            page.get_by_label("API key").fill(stack.key)
            page.get_by_label("API key").press("Enter")
            page.wait_for_selector("#sign-out:not([hidden])")
            opened = sorted(_open_ms(page, job_id, hosts) for _ in range(sizes.repeats))
            panels = page.locator(".panel").count()
            scroll = _scroll_ms(page, max(node["hostname"] for node in _nodes(stack)))
            browser.close()
    finally:
        stop_fleets(stack, fleets)
    return {"hosts": hosts, "render_p50_ms": percentile(opened, 0.5), "render_max_ms": opened[-1],
            "get_job_p50_ms": percentile(api, 0.5), "panels_in_page": panels,
            "scroll_to_last_ms": scroll, "runs": sizes.repeats}  # fmt: skip


def _nodes(stack: Stack) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{stack.url}/node/{TARGET}", headers={"Authorization": f"Bearer {stack.key}"}
    )
    with urllib.request.urlopen(request, timeout=WAIT_MS / 1000) as response:
        nodes: list[dict[str, Any]] = json.load(response)["nodes"]
        return nodes


def measure_console_alone(sizes: Sizes) -> dict[str, Any]:
    """N9 on a stack of its own (nats-server, a controller, simulated agents), in a
    process of its own: Playwright's driver needs an event loop policy that earlier
    measures in ``python -m bench`` have changed.

    Raises:
        subprocess.CalledProcessError: the measure failed.
    """
    command = [sys.executable, "-m", "bench.console", *(["--quick"] if sizes.is_quick else [])]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> int:
    return measure_main("python -m bench.console", measure_console)


if __name__ == "__main__":
    raise SystemExit(main())
