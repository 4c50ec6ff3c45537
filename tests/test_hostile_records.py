"""Decoding is total: malformed, deeply nested, untagged or oversize messages in any
stream or on any subject are skipped or refused with a clear line, never a 500, a dead
task or a silent agent; a record counts only for the host and job its subject names."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from agentd.counters import AgentCounters
from agentd.delivery.outbox import Outbox
from agentd.delivery.recorder import ResultRecorder
from controller.appkeys import AUDIT
from runtime.streamwriter import StreamWriter
from schemas.decoding import (
    MAX_WIRE_BYTES,
    WireError,
    decode_ack_from,
    decode_audit,
    decode_cancel,
    decode_chunk,
    decode_heartbeat,
    decode_idempotency_claim,
    decode_job,
    decode_job_record,
    decode_reply,
    decode_result,
    decode_result_from,
    decode_running_report,
    decode_running_report_from,
)
from schemas.subjects import Subjects
from tests.helpers import Controller, LiveAgent, MakeAgent, NatsServer, recorded_result
from tests.test_direct_nats import job, request

NESTED = b'{"type":"nexec.exec.v1.result","zz":' + b"[" * 3000 + b"]" * 3000 + b"}"
DECODERS = [
    decode_job,
    decode_result,
    decode_heartbeat,
    decode_job_record,
    decode_cancel,
    decode_chunk,
    decode_audit,
    decode_idempotency_claim,
    decode_reply,
    decode_running_report,
]


def nested(tag: str) -> bytes:
    return b'{"type":"' + tag.encode() + b'","zz":' + b"[" * 3000 + b"]" * 3000 + b"}"


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[]",
        b'{"type": 1}',
        b'{"type":"nexec.other.v1.thing"}',
        b'{"type":"nexec.invalid"}',
        NESTED,
        b'{"type":"x","zz":' + b"{" * 3000,
        b" " * (MAX_WIRE_BYTES + 1),
    ],
)
def test_every_decoder_turns_every_failure_into_wire_error(decode: Any, data: bytes) -> None:
    with pytest.raises(WireError):
        decode(data)


def test_the_type_tag_is_required() -> None:
    untagged = {"job_id": "j", "command": "id", "deadline": 1.0, "target": "_all"}
    with pytest.raises(WireError, match="type"):
        decode_job(json.dumps(untagged).encode())
    assert (
        decode_job(json.dumps({"type": "nexec.exec.v1.job", **untagged}).encode()).command == "id"
    )


def test_nesting_inside_a_valid_message_is_refused() -> None:
    with pytest.raises(WireError, match="nested too deep"):
        decode_heartbeat(nested("nexec.agent.v1.heartbeat"))


def test_a_record_speaks_only_for_the_host_and_job_of_its_subject() -> None:
    result = b'{"type":"nexec.exec.v1.result","job_id":"j1","hostname":"h2","status":"completed"}'
    assert decode_result_from(result, job_id="j1", hostname="h2").hostname == "h2"
    with pytest.raises(WireError, match="names host 'h2'"):
        decode_result_from(result, job_id="j1", hostname="h1")
    with pytest.raises(WireError, match="names job 'j1'"):
        decode_result_from(result, job_id="j2", hostname="h2")
    ack = b'{"type":"nexec.exec.v1.ack","job_id":"j1","hostname":"h2"}'
    with pytest.raises(WireError):
        decode_ack_from(ack, job_id="j1", hostname="h1")


def test_a_running_report_speaks_only_for_the_host_of_its_subject() -> None:
    report = b'{"type":"nexec.agent.v1.running","hostname":"h2","job_ids":["j1"]}'
    assert decode_running_report_from(report, hostname="h2").job_ids == ["j1"]
    with pytest.raises(WireError, match="names host 'h2'"):
        decode_running_report_from(report, hostname="h1")
    empty_id = b'{"type":"nexec.agent.v1.running","hostname":"h2","job_ids":[""]}'
    with pytest.raises(WireError):
        decode_running_report_from(empty_id, hostname="h2")
    subjects = Subjects()
    assert subjects.parse_running(subjects.running("web1.example.com")) == "web1.example.com"
    for subject in ("nexec.running", "nexec.running.h_31", "nexec.ack.j.h1", "nexec.running.a.b"):
        with pytest.raises(ValueError):
            subjects.parse_running(subject)


async def output_events(controller: Controller, job_id: str) -> list[dict[str, Any]]:
    """Every event of the job's live output, read as NDJSON until its end."""
    headers = {"Authorization": f"Bearer {controller.api_key}", "Accept": "application/x-ndjson"}
    async with controller.session.get(
        f"{controller.url}/job/{job_id}/output", headers=headers
    ) as response:
        assert response.status == 200
        return [json.loads(line) for line in (await response.text()).splitlines() if line]


async def test_a_nested_or_forged_result_record_does_not_break_or_change_the_job(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1")
    await live_agent(controller, "h2")
    ran = await controller.exec("_all", {"command": "hostname"})
    job_id = ran.body["job_id"]
    await recorded_result(nc, job_id, "h2")
    subjects = Subjects()
    js = nc.jetstream()
    await js.publish(subjects.result_record(job_id, "h1"), NESTED)
    forged = {
        "type": "nexec.exec.v1.result",
        "job_id": job_id,
        "hostname": "h2",
        "status": "failed",
        "error": "forged by h1",
    }
    await js.publish(subjects.result_record(job_id, "h1"), json.dumps(forged).encode())

    view = await controller.request("GET", f"/job/{job_id}")
    assert view.status == 200, view.body
    assert [(r["hostname"], r["status"]) for r in view.body["results"]] == [
        ("h1", "completed"),
        ("h2", "completed"),
    ]
    events = await output_events(controller, job_id)
    kinds = [event["event"] for event in events]
    assert (kinds.count("output"), kinds.count("result"), kinds[-1]) == (2, 2, "end"), kinds
    assert "forged" not in str(events)


async def test_output_stream_skips_bad_records_and_ends(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1")
    ran = await controller.exec("h1", {"command": "echo", "args": ["hello"]})
    job_id = ran.body["job_id"]
    await nc.jetstream().publish(Subjects().result_record(job_id, "h1"), NESTED)
    lines = await output_events(controller, job_id)
    kinds = [line["event"] for line in lines]
    assert kinds[-1] == "end", lines
    assert [line["data"]["hostname"] for line in lines if line["event"] == "result"] == ["h1"]


async def test_a_nested_audit_record_is_skipped(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1")
    await controller.exec("h1", {"command": "true"})
    await controller.app[AUDIT].flushed()
    await nc.jetstream().publish(Subjects().audit_record(), nested("nexec.audit.v1.record"))
    page = await controller.request("GET", "/audit")
    assert page.status == 200, page.body
    assert [record["path"] for record in page.body["records"]] == ["/node/h1/command/exec"]


async def test_a_job_record_that_is_not_json_is_skipped_in_the_list(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1")
    first = await controller.exec("h1", {"command": "true"})
    await nc.jetstream().publish(Subjects().job_record(str(uuid.uuid4())), b"not json")
    page = await controller.request("GET", "/job")
    assert page.status == 200, page.body
    assert [summary["job_id"] for summary in page.body["jobs"]] == [first.body["job_id"]]


@pytest.mark.parametrize(
    "message",
    [
        nested("nexec.exec.v1.job"),
        json.dumps(
            {k: v for k, v in job("h1", "touch", "/nonexistent/x").items() if k != "type"}
        ).encode(),
    ],
    ids=["nested", "untagged"],
)
@pytest.mark.usefixtures("record_streams")  # the agent records its results
async def test_an_agent_answers_a_bad_job_with_a_refusal(
    make_agent: MakeAgent, nc: Client, message: bytes
) -> None:
    agent = await make_agent("h1")
    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    await nc.publish(Subjects().exec_host("h1"), message, reply=inbox)
    reply = json.loads((await subscription.next_msg(timeout=10)).data)
    assert reply["type"] == "nexec.exec.v1.result"
    assert reply["status"] == "failed"
    assert reply["error"].startswith("invalid job message")
    assert agent.counters.started == 0
    # And the agent still serves.
    assert (await request(nc, Subjects().exec_host("h1"), job("h1", "true")))[
        "status"
    ] == "completed"


@pytest.mark.parametrize(
    "fields",
    [
        {"command": "/bin/true\u0000x"},
        {"args": ["ok", "a\u0000b"]},
        {"cwd": "/tmp\u0000"},
        {"env": {"A": "b\u0000"}},
    ],
    ids=["command", "args", "cwd", "env"],
)
async def test_a_nul_byte_is_answered_failed_by_an_agent_with_an_allowlist(
    controller: Controller, make_agent: MakeAgent, nc: Client, fields: dict[str, Any]
) -> None:
    """(``controller`` makes the results stream the refusal is recorded in.)"""
    agent = await make_agent("h1", allowed_commands=["/bin/true"], allow_request_env=True)
    message = job("h1", "/bin/true") | fields
    reply = await request(nc, Subjects().exec_host("h1"), message)
    assert reply["status"] == "failed"
    assert reply["job_id"] == message["job_id"]
    assert reply["error"].startswith("invalid job: NUL byte in ")
    assert agent.counters.started == 0
    recorded = await recorded_result(nc, message["job_id"], "h1")
    assert recorded["error"] == reply["error"]


@pytest.mark.usefixtures("record_streams")  # the agent records its results
async def test_untrusted_strings_are_escaped_in_the_log(
    make_agent: MakeAgent, nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await make_agent("h1")
    forged_line = "x\n2026-01-01 00:00:00 INFO nexec.agentd: all is well"
    message = job("h1", "true", job_id=forged_line, deadline=10**10)
    reply = await request(nc, Subjects().exec_host("h1"), message)
    assert reply["error"] == "invalid job: deadline too far ahead"
    logged = [record.getMessage() for record in caplog.records if "refused" in record.message]
    assert logged, caplog.text
    assert all("\n" not in line for line in logged)
    assert repr(forged_line) in logged[0]


def test_an_output_chunk_names_stdout_or_stderr_only() -> None:
    chunk = {"type": "nexec.exec.v1.output", "job_id": "j1", "hostname": "h1", "offset": 0}
    for stream in ("stdout", "stderr"):
        data = json.dumps({**chunk, "stream": stream, "data": "x"}).encode()
        assert decode_chunk(data).stream == stream
    for stream in ("stdin", "", "STDOUT", "stdout\x1b[2J"):
        with pytest.raises(WireError, match="stream"):
            decode_chunk(json.dumps({**chunk, "stream": stream, "data": "x"}).encode())


async def test_live_output_drops_a_chunk_of_another_stream(
    controller: Controller, live_agent: LiveAgent, nc: Client
) -> None:
    await live_agent(controller, "h1")
    ran = await controller.exec("h1", {"command": "echo", "args": ["hello"]})
    job_id = ran.body["job_id"]
    forged = {"type": "nexec.exec.v1.output", "job_id": job_id, "hostname": "h1", "offset": 0}
    await nc.jetstream().publish(
        Subjects().output_record(job_id, "h1"),
        json.dumps({**forged, "stream": "console", "data": "forged"}).encode(),
    )
    events = await output_events(controller, job_id)
    chunks = [event["data"] for event in events if event["event"] == "output"]
    assert [(chunk["stream"], chunk["data"]) for chunk in chunks] == [("stdout", "hello\n")]
    assert events[-1]["event"] == "end", events


FORGED_ESCAPES = "_INBOX.x\x1b[2J\x1b]0;owned\x07"
"""A reply subject NATS delivers as it is (no whitespace): terminal escapes."""


def untrusted_logged(caplog: pytest.LogCaptureFixture, marker: str, untrusted: str) -> str:
    """The one log line containing ``marker``, checked to show ``untrusted`` escaped."""
    (line,) = [r.getMessage() for r in caplog.records if marker in r.getMessage()]
    assert repr(untrusted) in line, line
    assert not any(c in line for c in "\n\x1b\x07"), line
    return line


async def test_a_reply_the_outbox_could_not_send_is_logged_escaped(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The outbox answers on the reply subject a job came with; when the publish fails,
    the log line quotes that subject (untrusted: any publisher chose it) with %r."""
    client = await nats.connect(nats_server.url)
    counters = AgentCounters()
    recorder = ResultRecorder(StreamWriter(client, timeout_s=1.0), retry_for_s=1.0)
    outbox = Outbox(client, Subjects(), "h1", results=recorder, counters=counters)
    await client.close()  # its publishes fail now, as on a connection lost for good
    await outbox.refuse(FORGED_ESCAPES, "j1", "invalid job")
    assert counters.replies_lost == 1
    untrusted_logged(caplog, "not sent", FORGED_ESCAPES)


async def test_a_cancel_request_s_caller_is_logged_escaped(
    make_agent: MakeAgent, nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await make_agent("h1")
    caller = "ops\n2026-01-01 00:00:00 INFO nexec.agentd: all is well\x1b[2J"
    message = job("h1", "sleep", "30")
    inbox = nc.new_inbox()
    replies = await nc.subscribe(inbox)
    await nc.publish(Subjects().exec_host("h1"), json.dumps(message).encode(), reply=inbox)
    assert json.loads((await replies.next_msg(timeout=10)).data)["type"] == "nexec.exec.v1.ack"
    cancel = {"type": "nexec.job.v1.cancel", "job_id": message["job_id"], "caller": caller}
    await nc.publish(Subjects().cancel(), json.dumps(cancel).encode())
    result = json.loads((await replies.next_msg(timeout=10)).data)
    assert result["status"] == "cancelled"
    untrusted_logged(caplog, "cancelled on request of", caller)
