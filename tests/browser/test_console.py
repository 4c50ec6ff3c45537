"""The web console in a real browser (headless Chromium, Playwright) against a real
controller, real agents and nats-server (docs/console.md). Each test writes screenshots
of the views it shows (the ``screenshots`` fixture)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.console import Console
from tests.helpers import Controller, LiveAgent, MakeController

HOSTS = ("web1", "web2", "web3")


async def three_agents(controller: Controller, live_agent: LiveAgent) -> None:
    for index, host in enumerate(HOSTS):
        await live_agent(controller, host, labels={"role": "web", "rack": f"r{index}"})


async def test_sign_in_shows_every_agent_and_the_key_stays_in_the_tab(
    browser: Browser, controller: Controller, live_agent: LiveAgent, screenshots: Path
) -> None:
    await three_agents(controller, live_agent)
    ran = await controller.exec("web1", {"command": "/bin/true"})  # audited
    assert ran.status == 202, ran.body
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await expect(page.get_by_role("heading", level=1)).to_have_text("Fleet")
    for host in HOSTS:
        await expect(page.locator(f'[data-host="{host}"]')).to_contain_text("role:web")
    await expect(page.get_by_text("3 of 3 live agents")).to_be_visible()
    await console.screenshot(screenshots, "fleet")
    assert await console.unlabelled_fields() == []
    await page.get_by_label("Filter by name or label").fill("rack:r1")
    await expect(page.get_by_text("1 of 3 live agents")).to_be_visible()
    await expect(page.locator('[data-host="web2"]')).to_be_visible()
    await console.view("Audit")
    await expect(page.locator("#audit tbody tr").first).to_contain_text("/bin/true")
    await console.screenshot(screenshots, "audit")

    stored = await page.evaluate("sessionStorage.getItem('nexec.apiKey')")
    assert stored == controller.api_key
    assert all(controller.api_key not in text for text in await console.stored_outside_the_tab())
    assert console.requested and all(controller.api_key not in url for url in console.requested)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    await expect(page.get_by_role("navigation")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    assert console.problems == []


async def test_the_fleet_refreshes_by_itself(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "web1")
    console = await Console.open(browser, controller, "?refresh_s=0.2")
    await console.signed_in(controller.api_key)
    page = console.page
    await expect(page.get_by_text("1 of 1 live agents")).to_be_visible()
    await live_agent(controller, "web2")
    await expect(page.get_by_text("2 of 2 live agents")).to_be_visible()
    await expect(page.locator('[data-host="web2"]')).to_be_visible()
    assert console.problems == []


async def test_run_on_all_shows_each_hosts_output_and_the_grouped_view(
    browser: Browser, controller: Controller, live_agent: LiveAgent, screenshots: Path
) -> None:
    await three_agents(controller, live_agent)
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await console.view("Run")
    await page.get_by_label("Target").fill("_all")
    await page.get_by_label("Command").fill("/bin/echo")
    await page.get_by_label("Arguments (one per line; exec only)").fill("hello from the console")
    await page.get_by_label("Command").press("Enter")  # Enter submits: the dry run
    await expect(page.locator("#run-hosts")).to_have_text("Resolves to 3 hosts: web1, web2, web3")
    await console.screenshot(screenshots, "run")
    assert await console.unlabelled_fields() == []
    await page.get_by_role("button", name="Run on 3 hosts").click()
    await expect(page.locator("#job-state")).to_have_text("completed")
    for host in HOSTS:
        panel = page.locator(f'.panel[data-host="{host}"]')
        await expect(panel).to_contain_text("hello from the console")
        await expect(panel).to_contain_text("exit 0")
    group = page.locator("#job-groups .group")
    await expect(group).to_have_count(1)
    await expect(group).to_contain_text("3 hosts")
    await expect(group).to_contain_text("web1, web2, web3")
    await page.get_by_label("Search the output").fill("nothing like this")
    await expect(page.locator("#job-counts")).to_contain_text("0 match")
    await page.get_by_label("Search the output").fill("")
    await console.screenshot(screenshots, "job")
    assert await console.unlabelled_fields() == []
    assert all(controller.api_key not in url for url in console.requested)
    assert console.problems == []


async def test_a_job_started_elsewhere_shows_live_and_is_cancelled_from_the_page(
    browser: Browser, controller: Controller, live_agent: LiveAgent, screenshots: Path
) -> None:
    await three_agents(controller, live_agent)
    started = await controller.request(
        "POST", "/node/role:web/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", "echo live-line; exec sleep 60"], "timeout": 90},
    )  # fmt: skip
    assert started.status == 202, started.body
    job_id = started.body["job_id"]
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await console.view("Jobs")
    await expect(page.locator("#jobs tbody tr").first).to_contain_text("role:web")
    await console.screenshot(screenshots, "jobs")
    await page.get_by_role("link", name=job_id[:8]).click()
    await expect(page.locator("#job-state")).to_have_text("running")
    for host in HOSTS:
        await expect(page.locator(f'.panel[data-host="{host}"]')).to_contain_text("live-line")
    await console.screenshot(screenshots, "job-running")
    await page.get_by_role("button", name="Cancel job").click()
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    await expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    record = await controller.request("GET", f"/job/{job_id}")
    assert record.body["state"] == "cancelled"
    assert console.problems == []


async def test_a_key_without_command_exec_sees_no_run_form(
    browser: Browser, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    """Nor a cancel button without ``job:cancel``, nor the audit without ``audit:read``."""
    controller = await make_controller(keys={"viewer": (["node:read", "job:read"], [])})
    await live_agent(controller, "web1")
    running = await controller.request(
        "POST", "/node/web1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", "exec sleep 60"], "timeout": 90},
    )  # fmt: skip
    console = await Console.open(browser, controller)
    await console.signed_in(controller.extra_keys["viewer"])
    page = console.page
    await expect(page.get_by_role("link", name="Fleet", exact=True)).to_be_visible()
    await expect(page.get_by_role("link", name="Run", exact=True)).to_be_hidden()
    await expect(page.get_by_role("link", name="Audit", exact=True)).to_be_hidden()
    await page.goto(controller.url + "/ui/#/run")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Fleet")
    await expect(page.get_by_label("Target")).to_have_count(0)
    await expect(page.get_by_label("Command")).to_have_count(0)
    job_id = running.body["job_id"]
    await page.goto(f"{controller.url}/ui/#/job/{job_id}")
    await expect(page.locator("#job-state")).to_have_text("running")
    await expect(page.get_by_role("button", name="Cancel job")).to_be_hidden()
    cancelled = await controller.request("POST", f"/job/{job_id}/cancel")
    assert cancelled.status == 202, cancelled.body
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    assert console.problems == []


async def test_the_history_pages_newest_first(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "web1")
    for index in range(26):  # one more than a page
        ran = await controller.exec("web1", {"command": "/bin/echo", "args": [f"job-{index}"]})
        assert ran.status == 202, ran.body
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await console.view("Jobs")
    rows = page.locator("#jobs tbody tr")
    await expect(rows).to_have_count(25)
    await expect(rows.first).to_contain_text("job-25")
    await expect(page.get_by_role("button", name="Newer")).to_be_disabled()
    await page.get_by_role("button", name="Older").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("job-0")
    await expect(page.get_by_role("button", name="Older")).to_be_disabled()
    await page.get_by_role("button", name="Newer").click()
    await expect(rows).to_have_count(25)
    assert console.problems == []


async def test_a_wrong_key_gets_the_apis_message_and_is_not_kept(
    browser: Browser, controller: Controller, screenshots: Path
) -> None:
    console = await Console.open(browser, controller)
    await expect(console.page.get_by_role("link", name="Fleet", exact=True)).to_be_hidden()
    await console.screenshot(screenshots, "sign-in")
    assert await console.unlabelled_fields() == []
    await console.sign_in("nxk_not-a-key")
    alert = console.page.get_by_role("alert")
    await expect(alert).to_have_text("401 unauthorized: unknown API key")
    await expect(console.page.get_by_label("API key")).to_be_visible()
    assert await console.page.evaluate("sessionStorage.length") == 0
    assert not any(re.search("not-a-key", url) for url in console.requested)
    assert console.problems == []


async def test_a_refusal_is_shown_as_the_apis_message(
    browser: Browser, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    """A 403 (a target outside the key's patterns) and a 503 (the fleet paused) show the
    API's own message; the page stays usable."""
    controller = await make_controller(keys={"web-only": (["command:exec"], ["web*"])})
    await three_agents(controller, live_agent)
    console = await Console.open(browser, controller)
    await console.signed_in(controller.extra_keys["web-only"])
    page = console.page
    await expect(page.get_by_role("heading", level=1)).to_have_text("Run")
    await page.get_by_label("Target").fill("_all")
    await page.get_by_label("Command").fill("/bin/true")
    await page.get_by_label("Command").press("Enter")
    await expect(page.get_by_role("alert")).to_have_text(
        "403 forbidden: key 'web-only' may not reach target '_all'"
    )
    paused = await controller.request("POST", "/fleet/pause")
    assert paused.status == 200, paused.body
    await page.get_by_label("Target").fill("web1")
    await page.get_by_label("Command").press("Enter")
    await expect(page.get_by_role("alert")).to_have_text(
        "503 fleet paused: the fleet is paused by admin"
    )
    await controller.request("POST", "/fleet/resume")
    await page.get_by_label("Command").press("Enter")
    await expect(page.get_by_role("alert")).to_be_hidden()
    await expect(page.locator("#run-hosts")).to_have_text("Resolves to 1 host: web1")
    assert console.problems == []


async def test_a_rollout_shows_its_progress(
    browser: Browser, controller: Controller, live_agent: LiveAgent, screenshots: Path
) -> None:
    await three_agents(controller, live_agent)
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await console.view("Run")
    await page.get_by_label("Target").fill("role:web")
    await page.get_by_label("Command").fill("/bin/echo")
    await page.get_by_label("Rollout batch size").fill("1")
    await page.get_by_label("Max failures").fill("0")
    await page.get_by_label("Command").press("Enter")
    await expect(page.locator("#run-hosts")).to_have_text(
        "Resolves to 3 hosts (1 at a time): web1, web2, web3"
    )
    await page.get_by_role("button", name="Run on 3 hosts").click()
    await expect(page.locator("#job-state")).to_have_text("completed")
    await expect(page.locator("#job-rollout")).to_have_text(
        "Rollout (1 at a time, at most 0 failures): 3 finished, 0 running, 0 pending, "
        "0 failed, 0 skipped"
    )
    assert console.problems == []


async def test_over_the_rate_the_page_shows_the_apis_429(
    browser: Browser, make_controller: MakeController
) -> None:
    controller = await make_controller(rate_limit_per_s=0.01, rate_limit_burst=3)
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)  # /whoami, then /node: 2 of 3
    page = console.page
    refresh = page.get_by_role("button", name="Refresh")
    await refresh.click()  # 3 of 3
    await refresh.click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "429 too many requests: key 'admin' is over its request rate; retry after"
    )
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert console.problems == []
