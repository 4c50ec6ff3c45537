"""The console's run form after a refusal, a host's streaming output (scrolling and
long lines) and shell jobs' command lines, in a real browser against a real controller,
agents and nats-server (docs/console.md)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from agentd.config import DEFAULT_BASE_ENV
from tests.browser.console import Console
from tests.helpers import Controller, LiveAgent, gated

OUTPUT = '.panel[data-host="web1"] pre'
"""web1's output in its panel. Every redraw makes the panel again, so each step below
finds it and acts in one call in the page (an element held between two calls may be
gone, with no size)."""
SCROLL = """([selector, top]) => {
  const pre = document.querySelector(selector);
  pre.scrollTop = top === null ? pre.scrollHeight : top;
  pre.dispatchEvent(new Event("scroll"));
}"""


async def scrolled(page: Page, selector: str = OUTPUT) -> tuple[int, int]:
    """How far the output is scrolled, and how far it can be (> 0: it overflows)."""
    top, most = await page.evaluate(
        "(selector) => { const pre = document.querySelector(selector);"
        " return [pre.scrollTop, pre.scrollHeight - pre.clientHeight]; }",
        selector,
    )
    return int(top), int(most)


async def overflows_sideways(page: Page, selector: str) -> bool:
    found: bool = await page.evaluate(
        "(selector) => { const pre = document.querySelector(selector);"
        " return pre.clientWidth === 0 || pre.scrollWidth > pre.clientWidth; }",
        selector,
    )
    return found


async def open_job(browser: Browser, controller: Controller, job_id: str) -> Console:
    console = await Console.open(browser, controller, "?refresh_s=0.2")
    await console.signed_in(controller.api_key)
    await console.page.evaluate("(id) => { location.hash = `#/job/${id}`; }", job_id)
    return console


async def test_a_refused_run_can_be_tried_again(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    """The real run refused (503, the fleet paused after the dry run): the API's message
    is shown and **Run on 1 host** stays usable; once resumed, the same click runs it."""
    await live_agent(controller, "web1")
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await console.view("Run")
    await page.get_by_label("Target").fill("web1")
    await page.get_by_label("Command").fill("/bin/echo")
    await page.get_by_label("Command").press("Enter")
    run = page.get_by_role("button", name="Run on 1 host")
    await expect(run).to_be_enabled()
    paused = await controller.request("POST", "/fleet/pause")
    assert paused.status == 200, paused.body
    await run.click()
    await expect(page.get_by_role("alert")).to_have_text(
        "503 fleet paused: the fleet is paused by admin"
    )
    await expect(run).to_be_enabled()
    resumed = await controller.request("POST", "/fleet/resume")
    assert resumed.status == 200, resumed.body
    await run.click()
    await expect(page.locator("#job-state")).to_have_text("completed")
    assert console.problems == []


async def test_output_scrolled_up_stays_while_it_streams_and_follows_at_the_end(
    browser: Browser, controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await live_agent(controller, "web1")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    script = f"seq 1 300; {gated(first)}; echo after-scroll; {gated(second)}"
    started = await controller.request(
        "POST", "/node/web1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script], "timeout": 60},
    )  # fmt: skip
    assert started.status == 202, started.body
    console = await open_job(browser, controller, started.body["job_id"])
    page = console.page
    output = page.locator(OUTPUT)
    await expect(output).to_contain_text("300")
    top, most = await scrolled(page)
    assert most > 0 and top >= most - 2  # it follows the end
    await page.evaluate(SCROLL, [OUTPUT, 0])  # the operator scrolls up to read
    first.rmdir()
    await expect(output).to_contain_text("after-scroll")
    top, most = await scrolled(page)
    assert most > 0 and top == 0  # redrawn with more output: still where it was left
    await page.evaluate(SCROLL, [OUTPUT, None])  # back at the end: followed again
    second.rmdir()
    await expect(page.locator("#job-state")).to_have_text("completed")
    top, most = await scrolled(page)
    assert most > 0 and top >= most - 2
    assert console.problems == []


async def test_the_grouped_view_keeps_its_scroll_while_other_hosts_stream(
    browser: Browser, controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    """A group is made again only when a host's outcome changes, not at every chunk."""
    for host in ("web1", "web2"):
        await live_agent(controller, host, base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host})
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    web2_goes_on = f"{gated(first)}; echo after-scroll; {gated(second)}"
    script = f'seq 1 300; if [ "$NEXEC_HOST" = web2 ]; then {web2_goes_on}; fi'
    started = await controller.request(
        "POST", "/node/_all/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script], "timeout": 60},
    )  # fmt: skip
    assert started.status == 202, started.body
    console = await open_job(browser, controller, started.body["job_id"])
    page = console.page
    group = "#job-groups .group pre"
    await expect(page.locator(group)).to_contain_text("300")
    await page.evaluate(SCROLL, [group, 500])
    first.rmdir()
    await expect(page.locator('.panel[data-host="web2"] pre')).to_contain_text("after-scroll")
    top, most = await scrolled(page, group)
    assert most > 500 and top == 500
    second.rmdir()
    await expect(page.locator("#job-state")).to_have_text("completed")
    assert console.problems == []


async def test_a_long_line_wraps_instead_of_scrolling_sideways(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "web1")
    line = "x" * 600  # one word, no space to break at
    ran = await controller.exec("web1", {"command": "/bin/echo", "args": [line]})
    assert ran.status == 202, ran.body
    console = await open_job(browser, controller, ran.body["job_id"])
    await expect(console.page.locator("#job-state")).to_have_text("completed")
    for where in (OUTPUT, "#job-groups .group pre"):
        await expect(console.page.locator(where)).to_contain_text(line)
        assert not await overflows_sideways(console.page, where), where
    assert console.problems == []


async def test_a_shell_jobs_command_line_reads_as_sh_c(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "web1", allow_shell=True)
    ran = await controller.request(
        "POST", "/node/web1/command/shell", json={"command": "echo hi | wc -c"}
    )
    assert ran.status == 202, ran.body
    console = await open_job(browser, controller, ran.body["job_id"])
    page = console.page
    await expect(page.locator("#job-summary")).to_contain_text("web1 $ sh -c 'echo hi | wc -c'")
    await console.view("Jobs")
    await expect(page.locator("#jobs tbody tr").first).to_contain_text("sh -c 'echo hi | wc -c'")
    await console.view("Audit")
    await expect(page.locator("#audit tbody tr").first).to_contain_text("sh -c 'echo hi | wc -c'")
    assert console.problems == []
