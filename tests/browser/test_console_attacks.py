"""The console under attack and under faults (docs/console.md, docs/security.md): a hostile
agent's output, errors and names stay text; the key leaves the page when it should and
only then; a broken output stream, a restarted controller, a 401 mid-session and a
``Retry-After`` never leave a blank page or an unhandled error."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec
import nats
from nats.aio.client import Client
from playwright.async_api import Browser, expect

from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.keys.store import revoke_key
from schemas.messages import ExecJob, ExecResult, Heartbeat, OutputChunk, ResultStatus
from schemas.subjects import Subjects
from tests.browser.console import Console
from tests.helpers import STARTUP_TIMEOUT_S, Controller, LiveAgent, MakeController, NatsServer

HOSTILE = '<img src=x onerror="window.pwned=1">'
"""What a hostile agent (or a job's own output) would like the page to run."""
NO_MARKUP = "document.querySelectorAll('img, [onerror]').length + (window.pwned ? 1 : 0)"


async def test_hostile_output_names_and_errors_show_as_text(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    """Markup stays text everywhere; terminal colours (ANSI) are dropped, other control
    and bidi characters shown as visible marks, never acted on."""
    await live_agent(controller, "web1")
    colours_bell_and_bidi = r"printf '\033[31mred\033[0m bell\007 \342\200\256evil\n'"
    script = f"printf '%s\\n' '{HOSTILE}'; {colours_bell_and_bidi}"
    shown = await controller.exec("web1", {"command": "sh", "args": ["-c", script]})
    assert shown.status == 202, shown.body
    failed = await controller.exec("web1", {"command": HOSTILE, "args": [HOSTILE]})
    assert failed.status == 202 and failed.body["results"][0]["status"] == "failed"
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await page.goto(f"{controller.url}/ui/#/job/{shown.body['job_id']}")
    output = page.locator('.panel[data-host="web1"] pre')
    await expect(output).to_contain_text(HOSTILE)
    await expect(output).to_contain_text("red bell\u2407 [U+202E]evil")
    grouped = page.locator("#job-groups pre")
    await expect(grouped).to_contain_text("red bell\u2407 [U+202E]evil")
    await page.goto(f"{controller.url}/ui/#/job/{failed.body['job_id']}")
    await expect(page.locator("#job-summary")).to_contain_text(f"web1 $ '{HOSTILE}' '{HOSTILE}'")
    await expect(page.locator('.panel[data-host="web1"]')).to_contain_text("<img src=x")
    await console.view("Jobs")
    await expect(page.locator("#jobs tbody tr").first).to_contain_text(HOSTILE)
    await console.view("Audit")
    await expect(page.locator("#audit tbody tr").first).to_contain_text(HOSTILE)
    await console.view("Run")
    await page.get_by_label("Target").fill(HOSTILE)
    await page.get_by_label("Command").fill(HOSTILE)
    await page.get_by_label("Command").press("Enter")
    await expect(page.get_by_role("alert")).to_contain_text("400 ")
    assert await page.evaluate(NO_MARKUP) == 0
    assert console.problems == []


async def test_a_malformed_job_address_shows_the_apis_answer(
    browser: Browser, controller: Controller
) -> None:
    """``#/job/%`` is no URI component: the page asks for it as it is (a 404), never dies."""
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    await console.page.goto(f"{controller.url}/ui/#/job/%E0%A4%A")
    await expect(console.page.get_by_role("alert")).to_contain_text("404 not found")
    assert console.problems == []


async def test_a_key_revoked_mid_session_leads_back_to_sign_in(
    browser: Browser, make_controller: MakeController, live_agent: LiveAgent
) -> None:
    """With the API's message; the key and everything read with it leave the page, and the
    key was never left in the sign-in field meanwhile."""
    controller = await make_controller(
        keys={"viewer": (["node:read"], [])}, keys_reload_interval_s=0.1
    )
    await live_agent(controller, "web1")
    console = await Console.open(browser, controller, "?refresh_s=0.2")
    await console.signed_in(controller.extra_keys["viewer"])
    page = console.page
    await expect(page.locator('[data-host="web1"]')).to_be_visible()
    assert await page.evaluate("document.getElementById('api-key').value") == ""
    revoke_key(controller.keys_file, "viewer")
    await expect(page.get_by_role("alert")).to_have_text("401 unauthorized: unknown API key")
    await expect(page.get_by_label("API key")).to_be_visible()
    await expect(page.locator('[data-host="web1"]')).to_have_count(0)
    await expect(page.get_by_role("navigation")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    assert console.problems == []


async def test_live_output_resumes_where_it_broke_when_the_controller_restarts(
    browser: Browser,
    make_controller: MakeController,
    live_agent: LiveAgent,
    tmp_path: Path,
) -> None:
    """The page reads the output again with ``Last-Event-ID``: nothing lost, nothing twice,
    and the error line goes once the controller answers again."""
    controller = await make_controller()
    await live_agent(controller, "web1")
    go = tmp_path / "go"
    os.mkfifo(go)
    script = f"echo first; read line < {go}; echo second; exec sleep 60"
    started = await controller.request(
        "POST", "/node/web1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", script], "timeout": 90},
    )  # fmt: skip
    assert started.status == 202, started.body
    job_id = started.body["job_id"]
    console = await Console.open(browser, controller, "?refresh_s=0.2")
    await console.signed_in(controller.api_key)
    page = console.page
    await page.goto(f"{controller.url}/ui/?refresh_s=0.2#/job/{job_id}")
    output = page.locator('.panel[data-host="web1"] pre')
    await expect(output).to_have_text("first\n")
    await controller.crash()
    await expect(page.get_by_role("alert")).to_contain_text("the controller did not answer")
    successor = await make_controller(restart_of=controller)
    await asyncio.to_thread(go.write_text, "go\n")
    await expect(output).to_have_text("first\nsecond\n")
    await expect(page.get_by_role("alert")).to_be_hidden()
    await expect(page.locator("#job-state")).to_have_text("running")
    assert (await successor.request("POST", f"/job/{job_id}/cancel")).status == 202
    await expect(page.locator("#job-state")).to_have_text("cancelled")
    assert console.problems == []


async def test_a_refused_sign_in_with_the_kept_key_keeps_it_and_tries_again(
    browser: Browser, make_controller: MakeController
) -> None:
    """A page reloaded while the key is over its rate (or the controller is draining) is
    not signed out: only a ``401`` forgets the key; after ``Retry-After`` it signs in."""
    controller = await make_controller(rate_limit_per_s=0.2, rate_limit_burst=2)
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    while (await controller.request("GET", "/whoami")).status != 429:
        pass  # the key's (and so the page's) requests are over its rate: 5 s to the next
    await page.reload()
    await expect(page.get_by_role("alert")).to_contain_text("429 too many requests")
    assert await page.evaluate("sessionStorage.length") == 1
    signed_in = page.get_by_role("button", name="Sign out")
    await expect(signed_in).to_be_visible(timeout=STARTUP_TIMEOUT_S * 1000)  # Retry-After: 5
    await expect(page.get_by_role("heading", level=1)).to_have_text("Fleet")
    assert console.problems == []


async def test_after_a_429_the_page_waits_its_retry_after(
    browser: Browser, make_controller: MakeController
) -> None:
    """Reading again (a refresh, a poll) before ``Retry-After`` has passed shows the same
    answer without sending a request that would be refused."""
    controller = await make_controller(rate_limit_per_s=0.01, rate_limit_burst=3)
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)  # /whoami, then /node: 2 of 3
    page = console.page
    refresh = page.get_by_role("button", name="Refresh")
    await refresh.click()  # 3 of 3
    await refresh.click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("429 too many requests")
    sent = [url for url in console.requested if url.endswith("/node")]
    await page.evaluate("document.getElementById('error').hidden = true")
    await refresh.click()
    await expect(alert).to_contain_text("429 too many requests")
    assert [url for url in console.requested if url.endswith("/node")] == sent
    assert console.problems == []


async def test_a_hostile_registry_entry_stays_in_its_columns(
    browser: Browser, controller: Controller, nc: Client
) -> None:
    """An agent's version and labels are its own to say (docs/security.md): shown as text,
    each cell cut at its column (the full text in its title), never drawn over the next
    column (a long version could otherwise pass for another "last seen")."""
    labels = {"role": "w" * 63, "rack": "r" * 63, "env": "e" * 63}
    version = HOSTILE + " \u202e" + "v" * 150 + "   0s ago"  # 256 at most
    entry = Heartbeat(
        hostname="evil1", instance_id="i", labels=labels, version=version,
        started_at=time.time(), sent_at=time.time(), interval_s=60.0,
    )  # fmt: skip
    await nc.jetstream().publish(Subjects().registry_entry("evil1"), msgspec.json.encode(entry))
    await controller.wait_for_agents("evil1")
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    row = console.page.locator('.cols[data-host="evil1"]')
    await expect(row).to_contain_text(HOSTILE)
    await expect(row).to_contain_text("[U+202E]")
    spill: list[str] = await row.evaluate(
        "(row) => [...row.children].filter((cell) => cell.scrollWidth > cell.clientWidth"
        " && (getComputedStyle(cell).overflowX !== 'hidden' || cell.title !== cell.textContent))"
        ".map((cell) => cell.textContent)"
    )
    assert spill == []
    assert await console.page.evaluate(NO_MARKUP) == 0
    assert console.problems == []


async def test_a_hosts_output_is_kept_to_its_last_64_kib_in_the_page(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    """A recorded result holds up to ``output_cap_bytes`` of each stream: the page keeps
    the last 64 KiB of it (docs/console.md), a very long line included."""
    await live_agent(controller, "web1")
    script = "head -c 100000 /dev/zero | tr '\\0' a; echo END"
    ran = await controller.exec("web1", {"command": "sh", "args": ["-c", script]})
    assert ran.status == 202, ran.body
    assert len(ran.body["results"][0]["stdout"]) == 100_004
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    await console.page.goto(f"{controller.url}/ui/#/job/{ran.body['job_id']}")
    grouped = console.page.locator("#job-groups pre")
    await expect(grouped).to_contain_text("aEND")
    assert len(await grouped.text_content() or "") == 64 * 1024
    assert console.problems == []


async def test_the_keyboard_alone_signs_in_and_reaches_the_named_lists(
    browser: Browser, controller: Controller, live_agent: LiveAgent
) -> None:
    """The key field has the focus on load, Enter signs in and moves the focus to the
    view's heading (not lost on the hidden form), Tab goes on into the view with a visible
    ring, and the virtualised lists are lists with a name (not anonymous boxes), in no
    live region (a screen reader would read out every chunk of output)."""
    await live_agent(controller, "web1")
    console = await Console.open(browser, controller)
    page = console.page
    await expect(page.get_by_label("API key")).to_be_focused()
    await page.keyboard.type(controller.api_key)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("list", name="Live agents")).to_contain_text("web1")
    await expect(page.get_by_role("heading", name="Fleet")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Filter by name or label")).to_be_focused()
    ring = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring == "solid"
    ran = await controller.exec("web1", {"command": "/bin/true"})
    await page.goto(f"{controller.url}/ui/#/job/{ran.body['job_id']}")
    await expect(page.get_by_role("list", name="Hosts")).to_contain_text("web1")
    live = "[aria-live]:not([aria-live=off]), [role=alert], [role=status], [role=log]"
    chatty = f"[...document.querySelectorAll('{live}')].filter((e) => e.querySelector('.vlist'))"
    assert await page.evaluate(f"{chatty}.length") == 0  # streaming output is not read aloud
    assert console.problems == []


class TwoOutcomes:
    """The fleet simulation's executor (no process): even hosts say one thing, odd
    hosts another, so the grouped view has two groups of 500."""

    def __init__(self, hostname: str, index: int) -> None:
        self.hostname, self.index = hostname, index

    async def run(self, job: ExecJob, timeout_s: float, stop: asyncio.Event) -> ExecResult:
        return ExecResult(
            job_id=job.job_id, hostname=self.hostname, status=ResultStatus.COMPLETED,
            stdout=f"parity {self.index % 2}\n", exit_code=self.index % 2,
        )  # fmt: skip


def simulated_agent(nats_server: NatsServer, shared: Client, index: int) -> Agent:
    hostname = f"h{index:04d}"
    config = AgentConfig(
        nats_url=nats_server.url, hostname=hostname, labels={"big": "yes"},
        heartbeat_interval_s=60,
    )  # fmt: skip
    return Agent(config, TwoOutcomes(hostname, index), connection=shared)


async def test_a_job_on_1000_hosts_draws_every_host_without_error(
    browser: Browser, controller: Controller, nats_server: NatsServer
) -> None:
    """Not timed (``make bench`` measures it): every host answered, two groups, only the
    rows in view in the page, the last host reached by scrolling, no error."""
    count = 1000
    shared = await nats.connect(nats_server.url)
    agents = [simulated_agent(nats_server, shared, index) for index in range(count)]
    try:
        for start in range(0, count, 200):
            await asyncio.gather(*(agent.start() for agent in agents[start : start + 200]))
        await controller.wait_for_agents(*(agent.config.hostname for agent in agents))
        ran = await controller.exec("big:yes", {"command": "/bin/true", "timeout": 60})
        assert ran.status == 202 and len(ran.body["results"]) == count
        console = await Console.open(browser, controller)
        await console.signed_in(controller.api_key)
        page = console.page
        await page.goto(f"{controller.url}/ui/#/job/{ran.body['job_id']}")
        await expect(page.locator("#job-counts")).to_have_text("1000 of 1000 hosts answered")
        await expect(page.locator("#job-groups .group")).to_have_count(2)
        await expect(page.locator("#job-groups .group").first).to_contain_text("500 hosts")
        assert await page.locator(".panel").count() < 30
        await page.locator(".vlist").evaluate("(list) => { list.scrollTop = 1e9; }")
        await expect(page.locator('.panel[data-host="h0999"]')).to_contain_text("parity 1")
        assert console.problems == []
    finally:
        for start in range(0, count, 500):
            await asyncio.gather(*(agent.stop() for agent in agents[start : start + 500]))
        await shared.drain()


async def test_a_forged_stream_name_cannot_rewrite_a_hosts_panel(
    browser: Browser, controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    """An output chunk's ``stream`` is the agent's to say: only ``stdout`` and ``stderr``
    are drawn; ``result``, ``hostname`` or ``outcome`` would have marked the host
    answered, renamed its panel or moved it to another group."""
    await live_agent(controller, "web1")
    started = await controller.request(
        "POST", "/node/web1/command/exec?wait=false",
        json={"command": "sh", "args": ["-c", "echo first; exec sleep 60"], "timeout": 90},
    )  # fmt: skip
    job_id = started.body["job_id"]
    console = await Console.open(browser, controller)
    await console.signed_in(controller.api_key)
    page = console.page
    await page.goto(f"{controller.url}/ui/#/job/{job_id}")
    panel = page.locator('.panel[data-host="web1"]')
    await expect(panel).to_contain_text("first")
    for index, stream in enumerate(["result", "hostname", "outcome", "stdout"]):
        chunk = {"job_id": job_id, "hostname": "web1", "stream": stream, "offset": index}
        forged = OutputChunk(**chunk, data=" db1 forged" if stream != "stdout" else "marker")
        subject = Subjects().output_record(job_id, "web1")
        await nc.jetstream().publish(subject, msgspec.json.encode(forged))
    await expect(panel).to_contain_text("marker")
    await expect(page.locator("#job-counts")).to_have_text("0 of 1 hosts answered")
    await expect(panel.locator(".panel-head")).to_have_text("web1running")
    assert await page.evaluate("document.body.textContent.includes('forged')") is False
    assert (await controller.request("POST", f"/job/{job_id}/cancel")).status == 202
    assert console.problems == []
