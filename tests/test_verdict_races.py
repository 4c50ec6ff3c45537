"""The controller's ``no_reply`` verdicts against the job record's other writers: a
DELETE of the job, and NATS's maximum payload (issue 11 review)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from controller.errors import NatsUnavailable
from controller.jobs.records import JobStore
from nexec.dev.processes import start_nats_server
from runtime.streamwriter import StreamWriter
from schemas.messages import ExecJob, ExecResult, JobRecord, ResultStatus, encode
from schemas.subjects import Subjects
from tests.helpers import LiveAgent, MakeController, NatsServer, recorded_result
from tests.test_agent_lost import acked_job, until

NOT_ACKED = "not acknowledged within 2s"
MAX_PAYLOAD = 8192


async def open_store(url: str) -> tuple[Client, JobStore]:
    nc = await nats.connect(url)
    writer = StreamWriter(nc, timeout_s=5.0)
    await writer.open()
    store = JobStore(nc.jetstream(), writer, Subjects())
    await store.ensure_streams(
        retention_s=60.0, replicas=1, jobs_max_bytes=1 << 20, results_max_bytes=1 << 20
    )
    return nc, store


@pytest.fixture
async def small_nats(tmp_path: Path) -> AsyncIterator[str]:
    """A nats-server whose ``max_payload`` is a few KiB."""
    config = tmp_path / "nats.conf"
    config.write_text(
        f'max_payload: {MAX_PAYLOAD}\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    process, url = start_nats_server(tmp_path / "js", config_file=config)
    yield url
    process.stop()


def record_of(job_id: str, hosts: list[str]) -> JobRecord:
    job = ExecJob(job_id=job_id, command="true", deadline=10.0, target="_all")
    return JobRecord(job=job, expected_hosts=hosts)


def no_reply(job_id: str, hostname: str) -> ExecResult:
    return ExecResult(
        job_id=job_id, hostname=hostname, status=ResultStatus.NO_REPLY, error=NOT_ACKED
    )


async def test_verdicts_too_large_for_the_record_still_decide_each_host(
    small_nats: str,
) -> None:
    """A job record that fits but not with every host's verdict added (a large fleet
    given up at once): the rewrite can never succeed, so it is not tried again for the
    job's retention; each host's own ``no_reply`` is still recorded."""
    nc, store = await open_store(small_nats)
    try:
        hosts = [f"host-{i:04d}.a-rather-long-domain.example.com" for i in range(120)]
        record = record_of("big", hosts)
        await store.save(record)
        await store.record_no_replies("big", [no_reply("big", h) for h in hosts])
        for host in (hosts[0], hosts[-1]):
            shown: dict[str, Any] = await recorded_result(nc, "big", host)
            assert (shown["status"], shown["error"]) == ("no_reply", NOT_ACKED)
        assert await store.load("big") == record
    finally:
        await nc.close()


class DeleteMeetsVerdict:
    """The JetStream context of a store whose DELETE is interleaved with a verdict
    write: the verdicts land right after the DELETE read the record."""

    def __init__(self, nc: Client, store: JobStore, verdict: ExecResult) -> None:
        self._js = nc.jetstream()
        self._store = store
        self._verdict: ExecResult | None = verdict

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def purge_stream(self, name: str, **kwargs: Any) -> bool:
        verdict, self._verdict = self._verdict, None
        if verdict is not None:
            await self._store.record_no_replies(verdict.job_id, [verdict])
        return await self._js.purge_stream(name, **kwargs)


async def test_a_delete_meeting_a_verdict_write_removes_the_job(
    nats_server: NatsServer,
) -> None:
    """The verdicts rewrite the record between the DELETE's read and its removal: the
    job (record and results) is still gone, and the DELETE says it was there."""
    nc, store = await open_store(nats_server.url)
    try:
        await store.save(record_of("gone", ["h1"]))
        store._js = DeleteMeetsVerdict(nc, store, no_reply("gone", "h1"))  # type: ignore[assignment]
        assert await store.delete("gone") is True
        assert await store.load("gone") is None
        assert await store.results(record_of("gone", ["h1"])) == []
    finally:
        await nc.close()


async def test_verdicts_after_a_delete_leave_nothing_behind(nats_server: NatsServer) -> None:
    nc, store = await open_store(nats_server.url)
    try:
        await store.save(record_of("gone", ["h1"]))
        assert await store.delete("gone") is True
        await store.record_no_replies("gone", [no_reply("gone", "h1")])
        assert await store.load("gone") is None
        assert await store.results(record_of("gone", ["h1"])) == []
    finally:
        await nc.close()


async def test_a_hosts_own_no_reply_is_not_taken_for_a_verdict(
    nats_server: NatsServer,
    make_controller: MakeController,
    live_agent: LiveAgent,
    nc: Client,
    tmp_path: Path,
) -> None:
    """A host may record ``no_reply`` on its own subject (with any text, up to a whole
    message): that is its answer, not the controller's verdict, so the job record
    does not take it (one host's text could fill the record for every verdict)."""
    controller = await make_controller()
    await live_agent(controller, "h1")
    gate = tmp_path / "gate"
    gate.mkdir()
    body = {"command": "sh", "args": ["-c", 'while [ -d "$0" ]; do sleep 0.05; done', str(gate)]}
    answer = asyncio.create_task(controller.exec("h1", body))
    try:
        await until(lambda: acked_job(controller, "h1") is not None)
        job_id = acked_job(controller, "h1")
        assert job_id is not None
        own = ExecResult(
            job_id=job_id, hostname="h1", status=ResultStatus.NO_REPLY, error="x" * 100_000
        )
        await nc.jetstream().publish(Subjects().result_record(job_id, "h1"), encode(own))
        response = await answer
    finally:
        gate.rmdir()
    assert response.body["results"][0]["error"] == own.error
    reader, store = await open_store(nats_server.url)
    try:
        record = await store.load(job_id)
    finally:
        await reader.close()
    assert record is not None and record.no_replies == {}


async def test_verdicts_refused_for_want_of_room_are_tried_again_not_dropped(
    nats_server: NatsServer,
) -> None:
    """A full job stream refuses the record's rewrite: that is not "the record changed"
    (read again, then given up), it is a failure the verdict recorder tries again."""
    nc, store = await open_store(nats_server.url)
    try:
        record = record_of("full", ["h1"])
        await store.save(record)
        stream = await nc.jetstream().stream_info(Subjects().jobs_stream())
        config = stream.config
        config.max_bytes = stream.state.bytes  # no room for a larger record
        await nc.jetstream().update_stream(config)
        with pytest.raises(NatsUnavailable, match=r"maximum bytes|insufficient"):
            await store.record_no_replies("full", [no_reply("full", "h1")])
    finally:
        await nc.close()
