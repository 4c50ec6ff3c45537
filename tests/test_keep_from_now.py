"""A rollout's results written again at its end (``JobStore.keep_from_now``), so that
they last ``job_retention_s`` from the end (docs/jobs.md, "Rollouts"): more results,
and more bytes, than the writes it keeps in flight at once, next to the controller's
verdicts and a late result. Real NATS."""

from __future__ import annotations

import nats
from nats.aio.client import Client

from controller.jobs.records import KEEP_IN_FLIGHT, KEEP_IN_FLIGHT_BYTES, JobStore
from runtime.streamwriter import StreamWriter
from schemas.messages import ExecJob, ExecResult, JobRecord, ResultStatus, encode
from schemas.subjects import Subjects
from tests.helpers import NatsServer

SUBJECTS = Subjects()
OUTPUT_BYTES = 32 * 1024


async def open_store(url: str) -> tuple[Client, JobStore]:
    nc = await nats.connect(url)
    writer = StreamWriter(nc, timeout_s=5.0)
    await writer.open()
    store = JobStore(nc.jetstream(), writer, SUBJECTS)
    await store.ensure_streams(
        retention_s=600.0, replicas=1, jobs_max_bytes=1 << 20, results_max_bytes=1 << 26
    )
    return nc, store


async def last_on(nc: Client, job_id: str, host: str) -> tuple[int, bytes]:
    """The sequence and data of the last record on ``host``'s result subject."""
    raw = await nc.jetstream().get_last_msg(
        SUBJECTS.results_stream(), SUBJECTS.result_record(job_id, host)
    )
    return raw.seq or 0, raw.data or b""


async def test_every_result_is_written_again_and_a_late_one_stays_the_last(
    nats_server: NatsServer,
) -> None:
    """More own results than ``KEEP_IN_FLIGHT`` and more bytes than
    ``KEEP_IN_FLIGHT_BYTES``, each written again unchanged after the record; the
    controller's verdicts copied; a host whose own result came after its verdict keeps
    that result as its last."""
    job_id = "kept"
    own = [f"h{n:03d}" for n in range(KEEP_IN_FLIGHT + 40)]
    verdicts, late = ["v1", "v2"], "late"
    assert len(own) * OUTPUT_BYTES > KEEP_IN_FLIGHT_BYTES
    nc, store = await open_store(nats_server.url)
    try:
        job = ExecJob(job_id=job_id, command="true", deadline=10.0, target="pool:x")
        await store.save(JobRecord(job=job, expected_hosts=[*own, *verdicts, late]))
        collected: dict[str, ExecResult] = {}
        for host in own:
            collected[host] = ExecResult(
                job_id=job_id, hostname=host, status=ResultStatus.COMPLETED,
                exit_code=0, stdout="x" * OUTPUT_BYTES,
            )  # fmt: skip
        for host in [*verdicts, late]:
            collected[host] = ExecResult(
                job_id=job_id, hostname=host, status=ResultStatus.NO_REPLY, error="lost"
            )
        for result in collected.values():
            await store.record_where_absent(job_id, [result])
        late_result = ExecResult(
            job_id=job_id, hostname=late, status=ResultStatus.COMPLETED, exit_code=0
        )
        await nc.jetstream().publish(SUBJECTS.result_record(job_id, late), encode(late_result))
        before = {host: await last_on(nc, job_id, host) for host in collected}

        await store.keep_from_now(job_id, sorted(collected), collected)

        for host in collected:
            seq, data = await last_on(nc, job_id, host)
            assert seq > before[host][0], host  # written again
            assert data == before[host][1], host  # unchanged
        assert (await last_on(nc, job_id, late))[1] == encode(late_result)
    finally:
        await nc.close()
