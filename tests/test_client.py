"""nexec.Client and nexec.SyncClient against a real controller, real agents and real NATS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

import nexec
from agentd.agent import Agent
from agentd.config import AgentConfig
from controller.appkeys import NATS_LINK
from nexec._retry import parse_retry_after
from nexec.dev.processes import ManagedProcess, start_nats_server
from nexec.errors import api_error
from schemas.api import (
    AuditList,
    ExecResponse,
    HealthResponse,
    JobEnd,
    JobList,
    JobState,
    JobSummary,
    JobView,
    NodeList,
)
from schemas.messages import AuditRecord, ExecResult, OutputChunk
from tests.helpers import STARTUP_TIMEOUT_S, Controller, Fifo, MakeAgent, MakeController
from tests.loopback_proxy import LoopbackProxy

FAST = nexec.RetryPolicy(backoff_s=(0.01, 0.01, 0.01))
"""The default rule with short backoffs, so that tests do not wait."""


@pytest.fixture
async def fleet(controller: Controller, make_agent: MakeAgent) -> Controller:
    """A controller with two agents, web1 and web2 (label role:web), shell allowed."""
    for host in ("web1", "web2"):
        await make_agent(host, labels={"role": "web"}, allow_shell=True)
    await controller.wait_for_agents("web1", "web2")
    return controller


def client_of(controller: Controller, key: str | None = None) -> nexec.Client:
    return nexec.Client(controller.url, key or controller.api_key, retry=FAST)


async def test_exec_shell_job_and_jobs_give_typed_results(fleet: Controller) -> None:
    async with client_of(fleet) as client:
        one = await client.exec("web1", "echo", ["hello", "world"], timeout=10, cwd="/tmp")
        both = await client.shell("role:web", "echo $FOO-$((1+2))", env={"FOO": "x"})
        assert isinstance(one, ExecResponse)
        assert one.complete
        [result] = one.results
        assert isinstance(result, ExecResult)
        assert (result.hostname, result.status, result.stdout) == (
            "web1",
            "completed",
            "hello world\n",
        )
        assert [(r.hostname, r.stdout) for r in both.results] == [
            ("web1", "x-3\n"),
            ("web2", "x-3\n"),
        ]

        view = await client.job(one.job_id)
        assert isinstance(view, JobView)
        assert (view.state, view.command, view.args, view.cwd, view.timeout) == (
            JobState.COMPLETED, "echo", ["hello", "world"], "/tmp", 10,
        )  # fmt: skip

        # Encoded again, a result is the API's document (docs/client.md says so).
        raw = await fleet.request("GET", f"/job/{one.job_id}")
        assert msgspec.json.decode(msgspec.json.encode(view)) == raw.body

        page = await client.job_page(limit=1)
        assert isinstance(page, JobList)
        assert page.next_cursor is not None
        listed = [summary async for summary in client.jobs(page_size=1)]
        assert all(isinstance(summary, JobSummary) for summary in listed)
        assert [summary.job_id for summary in listed] == [both.job_id, one.job_id]


async def test_wait_false_then_live_output_then_the_job(fleet: Controller) -> None:
    async with client_of(fleet) as client:
        accepted = await client.exec("web1", "sh", ["-c", "echo out; echo err >&2"], wait=False)
        assert (accepted.complete, accepted.results) == (False, [])
        events = [event async for event in client.output(accepted.job_id)]
        chunks = [event.data for event in events if isinstance(event.data, OutputChunk)]
        assert {(chunk.stream, chunk.data) for chunk in chunks} == {
            ("stdout", "out\n"),
            ("stderr", "err\n"),
        }
        [result] = [event.data for event in events if event.kind == "result"]
        assert isinstance(result, ExecResult) and result.status == "completed"
        assert events[-1].kind == "end"
        assert events[-1].data == JobEnd(job_id=accepted.job_id, state=JobState.COMPLETED)
        assert all(event.id is not None for event in events[:-1])

        # Resuming after a given event gives the rest, and nothing twice.
        rest = [
            event async for event in client.output(accepted.job_id, last_event_id=events[0].id or 0)
        ]
        assert rest == events[1:]
        assert (await client.job(accepted.job_id)).complete


async def test_wait_n_returns_what_arrived(fleet: Controller, started: Fifo) -> None:
    async with client_of(fleet) as client:
        running = await client.exec(
            "web1", "sh", ["-c", f"echo go > {started.path}; sleep 30"], wait=0
        )
        assert not running.complete
        await started.lines(1)
        cancelled = await client.cancel(running.job_id)
        assert isinstance(cancelled, JobView)
        events = [event async for event in client.output(running.job_id)]
        assert events[-1].data == JobEnd(job_id=running.job_id, state=JobState.CANCELLED)
        with pytest.raises(nexec.Conflict) as ended:
            await client.cancel(running.job_id)
        assert (ended.value.status, ended.value.error) == (409, "conflict")
        await client.delete_job(running.job_id)
        with pytest.raises(nexec.NotFound):
            await client.job(running.job_id)


async def test_nodes_node_health_and_audit(fleet: Controller) -> None:
    async with client_of(fleet) as client:
        nodes = await client.nodes()
        assert isinstance(nodes, NodeList)
        assert [node.hostname for node in nodes.nodes] == ["web1", "web2"]
        assert [node.labels for node in (await client.node("web2")).nodes] == [{"role": "web"}]
        assert len((await client.node("role:web")).nodes) == 2
        health = await client.health()
        assert isinstance(health, HealthResponse)
        assert (health.status, health.nats, health.agents) == ("ok", "connected", 2)

        done = await client.exec("web1", "true")
        records = [record async for record in client.audit(key_name="admin", page_size=1)]
        assert all(isinstance(record, AuditRecord) for record in records)
        assert [(r.job_id, r.command, r.status) for r in records] == [(done.job_id, "true", 202)]
        page = await client.audit_page(limit=1, since=0, key_name="admin")
        assert isinstance(page, AuditList)
        assert page.records == records


async def test_health_of_a_controller_without_nats_is_a_result_not_an_error(
    make_controller: MakeController, unused_tcp_port: int
) -> None:
    controller = await make_controller(
        nats_url=f"nats://127.0.0.1:{unused_tcp_port}", wait_for_nats=False
    )
    async with client_of(controller) as client:
        health = await client.health()
    assert (health.status, health.nats) == ("NATS not connected (connecting)", "connecting")


async def test_each_refusal_raises_its_class_with_status_error_details(
    fleet: Controller, make_controller: MakeController
) -> None:
    async def refusal(client: nexec.Client, call: Awaitable[object]) -> nexec.APIError:
        with pytest.raises(nexec.APIError) as caught:
            await call
        return caught.value

    async with client_of(fleet) as client:
        bad = await refusal(client, client.exec("web1", "ls", cwd="tmp"))
        assert (type(bad), bad.status, bad.error) == (nexec.BadRequest, 400, "invalid request")
        assert bad.details == "cwd: must be an absolute path"
        bad_target = await refusal(client, client.exec("a:b:c", "ls"))
        assert isinstance(bad_target, nexec.BadRequest)
        assert "target" in bad_target.details
        unknown_host = await refusal(client, client.exec("web9", "ls"))
        assert (type(unknown_host), unknown_host.status) == (nexec.NotFound, 404)
        assert unknown_host.details == "no registered agent matches target 'web9'"
        unknown_job = await refusal(client, client.job("no-such-job"))
        assert isinstance(unknown_job, nexec.NotFound)
        first = await client.exec("web1", "true", idempotency_key="deploy-42")
        replayed = await client.exec("web1", "true", idempotency_key="deploy-42")
        assert replayed.job_id == first.job_id
        reused = await refusal(client, client.exec("web1", "false", idempotency_key="deploy-42"))
        assert (type(reused), reused.status) == (nexec.Conflict, 409)
        assert "deploy-42" in reused.details
        oversize = await refusal(client, client.exec("web1", "echo", ["x" * 70_000]))
        assert (type(oversize), oversize.status) == (nexec.PayloadTooLarge, 413)

    async with client_of(fleet, key="nxk_not-a-key") as stranger:
        unauthorized = await refusal(stranger, stranger.nodes())
        assert (type(unauthorized), unauthorized.status) == (nexec.Unauthorized, 401)
        assert "nxk_not-a-key" not in str(unauthorized)
        assert "nxk_not-a-key" not in repr(stranger)

    scoped = await make_controller(keys={"webops": (["command:exec"], ["web*"])})
    async with client_of(scoped, key=scoped.extra_keys["webops"]) as webops:
        forbidden = await refusal(webops, webops.exec("_all", "true"))
        assert (type(forbidden), forbidden.status) == (nexec.Forbidden, 403)
        assert forbidden.details == "key 'webops' may not reach target '_all'"
        lacking = await refusal(webops, webops.nodes())
        assert isinstance(lacking, nexec.Forbidden)
    for error in (bad, unknown_host, reused, oversize, unauthorized, forbidden):
        assert isinstance(error, nexec.NexecError)


async def test_connection_refused_and_no_answer_are_transport_errors(unused_tcp_port: int) -> None:
    async with nexec.Client(f"http://127.0.0.1:{unused_tcp_port}", "nxk_secret") as client:
        with pytest.raises(nexec.ConnectionFailed) as refused:
            await client.health()
    assert isinstance(refused.value, nexec.TransportError)
    assert "nxk_secret" not in str(refused.value)
    async with (
        LoopbackProxy(upstream_port=None) as black_hole,
        nexec.Client(black_hole.url, "nxk_secret", timeout_s=0.2) as client,
    ):
        with pytest.raises(nexec.TimedOut):
            await client.nodes()


async def test_429_is_retried_after_retry_after_and_not_without_an_idempotency_key(
    make_controller: MakeController, make_agent: MakeAgent, tmp_path: Path
) -> None:
    """0.8 requests a second, bursts of 1: a request within 1.25 s of another gets 429
    with ``Retry-After`` 1 or 2 (whole seconds, rounded up: the bucket then holds a token
    again). 1.25 s is not a whole number of seconds, so the wait never ends just short."""
    controller = await make_controller(rate_limit_per_s=0.8, rate_limit_burst=1)
    await make_agent("r1")
    await controller.wait_for_agents("r1")
    runs = tmp_path / "runs"
    append = ["-c", f"echo ran >> {runs}"]
    notices: list[nexec.Retrying] = []
    async with nexec.Client(
        controller.url, controller.api_key, retry=FAST, on_retry=notices.append
    ) as client:
        await client.nodes()  # takes the one token
        with pytest.raises(nexec.TooManyRequests) as over:
            await client.exec("r1", "sh", append, idempotency_key=False)
        assert over.value.status == 429
        assert over.value.retry_after_s in (1.0, 2.0)
        assert notices == []

        response = await client.exec("r1", "sh", append)
    assert [r.status for r in response.results] == ["completed"]
    assert [(n.attempt, n.error.status) for n in notices] == [(1, 429)]
    assert notices[0].delay_s == notices[0].error.retry_after_s
    assert notices[0].path == "/node/r1/command/exec"
    assert runs.read_text() == "ran\n"


async def test_503_before_anything_ran_is_retried_with_the_same_key_and_runs_once(
    make_controller: MakeController, unused_tcp_port: int, tmp_path: Path, agent_state_dir: Path
) -> None:
    """The controller's NATS is not up yet: an exec gets 503 (nothing ran). Without an
    idempotency key it is not retried. With one, the client retries; before the retry
    (in ``on_retry``) the test starts NATS and an agent, so the retry runs the job."""
    nats_url = f"nats://127.0.0.1:{unused_tcp_port}"
    controller = await make_controller(nats_url=nats_url, wait_for_nats=False)
    notices: list[nexec.Retrying] = []
    started: list[tuple[ManagedProcess, Agent]] = []

    async def bring_nats_up(notice: nexec.Retrying) -> None:
        notices.append(notice)
        if not started:
            process, _ = start_nats_server(tmp_path / "late-nats", port=unused_tcp_port)
            agent = Agent(
                AgentConfig(
                    nats_url=nats_url, hostname="late1", heartbeat_interval_s=30.0,
                    kill_grace_s=0.5, state_dir=agent_state_dir / "late1",
                )
            )  # fmt: skip
            started.append((process, agent))
            await asyncio.wait_for(controller.app[NATS_LINK].ready.wait(), STARTUP_TIMEOUT_S)
            await agent.start()
            await controller.wait_for_agents("late1")

    try:
        async with nexec.Client(
            controller.url, controller.api_key, retry=FAST, on_retry=bring_nats_up
        ) as client:
            with pytest.raises(nexec.ServiceUnavailable) as unavailable:
                await client.exec("late1", "true", idempotency_key=False)
            assert unavailable.value.details == "the controller is not connected to NATS"
            assert notices == []

            response = await client.exec("late1", "echo", ["once"])
            assert [(r.hostname, r.stdout) for r in response.results] == [("late1", "once\n")]
            assert [(n.attempt, n.error.status) for n in notices] == [(1, 503)]
            jobs = [summary async for summary in client.jobs()]
            assert [summary.job_id for summary in jobs] == [response.job_id]
    finally:
        for process, agent in started:
            await agent.stop()
            process.stop()


async def test_live_output_resumes_after_a_dropped_connection(
    fleet: Controller, started: Fifo, tmp_path: Path
) -> None:
    """The client reads through a loopback TCP proxy; the test cuts every connection
    of the proxy after the first event, while the job waits on its gate. The client
    reconnects with Last-Event-ID and gets the rest, nothing twice."""
    gate = tmp_path / "gate"
    gate.mkdir()
    script = (
        f"echo first; echo go > {started.path}; while [ -d {gate} ]; do sleep 0.05; done; echo last"
    )
    port = int(fleet.url.rsplit(":", 1)[1])
    async with (
        LoopbackProxy(port) as proxy,
        nexec.Client(proxy.url, fleet.api_key, retry=FAST) as client,
    ):
        job = await client.exec("web1", "sh", ["-c", script], wait=False)
        await started.lines(1)
        events = client.output(job.job_id)
        first = await anext(events)
        assert isinstance(first.data, OutputChunk) and first.data.data == "first\n"
        connections = proxy.connections
        proxy.drop()
        gate.rmdir()
        rest = [event async for event in events]
    assert proxy.connections == connections + 1
    chunks = [e.data.data for e in [first, *rest] if isinstance(e.data, OutputChunk)]
    assert chunks == ["first\n", "last\n"]
    assert [e.kind for e in rest[-2:]] == ["result", "end"]


async def test_the_sync_client_does_the_same_from_a_plain_thread(fleet: Controller) -> None:
    """The controller runs in this test's event loop, so the script runs in a thread,
    as a synchronous program would."""

    def script() -> None:
        with nexec.SyncClient(fleet.url, fleet.api_key, retry=FAST) as client:
            assert "nxk_" not in repr(client)
            response = client.exec("web1", "echo", ["sync"])
            assert isinstance(response, ExecResponse)
            assert response.results[0].stdout == "sync\n"
            shell = client.shell("_all", "echo $0", wait=True)
            assert len(shell.results) == 2
            assert client.job(response.job_id).state is JobState.COMPLETED
            assert [s.job_id for s in client.jobs(page_size=1)] == [shell.job_id, response.job_id]
            events = list(client.output(response.job_id))
            assert events[-1].data == JobEnd(job_id=response.job_id, state=JobState.COMPLETED)
            assert [n.hostname for n in client.nodes().nodes] == ["web1", "web2"]
            assert client.node("web1").nodes[0].hostname == "web1"
            assert client.health().status == "ok"
            assert next(client.audit(key_name="admin")).job_id == shell.job_id
            with pytest.raises(nexec.NotFound):
                client.exec("web9", "true")
            client.delete_job(response.job_id)
            with pytest.raises(nexec.NotFound):
                client.job(response.job_id)
        client.close()  # a second close does nothing

    await asyncio.to_thread(script)


DOCS = Path(__file__).parent.parent / "docs" / "client.md"


async def test_the_examples_in_docs_client_md_run(fleet: Controller) -> None:
    """Each ```python block of docs/client.md, run as its own process against this fleet."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOCS.read_text(), re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 4
    env = {**os.environ, "NEXEC_URL": fleet.url, "NEXEC_API_KEY": fleet.api_key}
    outputs = []
    for block in blocks:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", block, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(process.communicate(), STARTUP_TIMEOUT_S)
        assert process.returncode == 0, (block, stderr.decode())
        outputs.append(stdout.decode())
    script, program, errors, listing = outputs[:4]
    assert script.splitlines() == ["web1 completed 0 hello", "web2 completed 0 hello"]
    assert "web1: starting\n" in program and "ended: completed" in program
    assert errors.splitlines() == [
        "404 not found - no registered agent matches target 'web9'",
        "400 cwd: must be an absolute path",
    ]
    assert listing.startswith("web1 {'role': 'web'}")
    incident = outputs[4].splitlines()
    assert incident[:2] == [
        "would run on ['web1', 'web2'] 2 at once: 1",
        "['web1 completed', 'web2 completed']",
    ]
    assert incident[3:] == ["the fleet is paused by admin", "True None", "True"]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, nexec.BadRequest), (401, nexec.Unauthorized), (403, nexec.Forbidden),
        (404, nexec.NotFound), (408, nexec.RequestTimeout), (409, nexec.Conflict),
        (413, nexec.PayloadTooLarge), (415, nexec.UnsupportedMediaType),
        (429, nexec.TooManyRequests), (500, nexec.InternalServerError),
        (503, nexec.ServiceUnavailable), (405, nexec.APIError),
    ],
)  # fmt: skip
def test_every_documented_status_has_its_class(status: int, kind: type[nexec.APIError]) -> None:
    body = b'{"error": "e", "details": "d", "code": %d}' % status
    error = api_error(status, body, "Reason")
    assert (type(error), error.status, error.error, error.details) == (kind, status, "e", "d")


def test_an_answer_that_is_not_an_error_body_keeps_its_reason_and_text() -> None:
    error = api_error(502, b"<html>bad gateway</html>", "Bad Gateway")
    assert (type(error), error.error, error.details) == (
        nexec.APIError, "Bad Gateway", "<html>bad gateway</html>",
    )  # fmt: skip


def test_the_retry_rule() -> None:
    policy = nexec.RetryPolicy()
    busy = nexec.ServiceUnavailable(503, "NATS unavailable", "d")
    told = nexec.TooManyRequests(429, "too many requests", "d", retry_after_s=3.0)
    assert [policy.delay_s(n, busy) for n in range(4)] == [0.5, 1.0, 2.0, None]
    assert [policy.delay_s(n, told) for n in range(4)] == [3.0, 3.0, 3.0, None]
    too_long = nexec.TooManyRequests(429, "e", "d", retry_after_s=120.0)
    assert policy.delay_s(0, too_long) is None
    assert policy.delay_s(0, nexec.InternalServerError(500, "e", "d")) is None
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT") == 0.0


async def test_output_events_larger_than_aiohttp_line_buffer_are_read(fleet: Controller) -> None:
    """A result event carries ``output_cap_bytes`` (256 KiB) of each stream: one NDJSON
    line longer than aiohttp's default line limit (512 KiB with its default buffer)."""
    script = "head -c 300000 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero | tr '\\0' y >&2"
    async with client_of(fleet) as client:
        job = await client.exec("web1", "sh", ["-c", script])
        events = [event async for event in client.output(job.job_id)]
    [result] = [event.data for event in events if isinstance(event.data, ExecResult)]
    assert result.stdout_truncated and result.stdout_bytes == 300_000
    assert result.stdout == job.results[0].stdout


async def test_a_redirect_is_not_followed_so_the_key_goes_nowhere_else() -> None:
    """Two loopback HTTP servers: one redirects every request to the other, which
    records the requests it gets."""
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"nodes": []})

    elsewhere = web.Application()
    elsewhere.router.add_get("/node", record)
    async with running(elsewhere) as elsewhere_url:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(elsewhere_url + "/node")

        redirecting = web.Application()
        redirecting.router.add_get("/node", redirect)
        async with running(redirecting) as url, nexec.Client(url, "nxk_secret") as client:
            with pytest.raises(nexec.APIError) as caught:
                await client.nodes()
    assert caught.value.status == 307
    assert seen == []


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_an_unknown_option_is_refused_before_anything_is_sent(unused_tcp_port: int) -> None:
    async with nexec.Client(f"http://127.0.0.1:{unused_tcp_port}", "k") as client:
        with pytest.raises(TypeError, match="timout"):
            await client.exec("web1", "true", timout=3)  # type: ignore[call-arg]
