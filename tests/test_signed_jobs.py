"""Signed jobs: an agent that trusts signers runs only jobs they signed, once.

Each refused job would append a line to a file if it ran; the tests check that
the file stays as it was.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from runtime.signing import SIGNATURE_HEADER, SIGNER_HEADER, JobSigner, write_seed_file
from schemas.messages import ExecJob, encode
from schemas.subjects import Subjects
from tests.helpers import Controller, LiveAgent, MakeAgent, MakeController, NatsServer

HOST_SUBJECT = Subjects().exec_host("h1")


@pytest.fixture
def signer(tmp_path: Path) -> JobSigner:
    return write_seed_file(tmp_path / "controller.nk")


@pytest.fixture
async def signing_controller(
    make_controller: MakeController, live_agent: LiveAgent, signer: JobSigner, tmp_path: Path
) -> Controller:
    """A controller that signs, and agent h1 that trusts only its key."""
    controller = await make_controller(job_signing_key_file=tmp_path / "controller.nk")
    await live_agent(controller, "h1", trusted_signers=[signer.public_key])
    return controller


def append_line(path: Path) -> dict[str, Any]:
    """An exec body whose process appends one line to ``path``."""
    return {"command": "/bin/sh", "args": ["-c", f"echo ran >> {path}"], "timeout": 10}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def signed_job(signer: JobSigner, marker: Path, **fields: Any) -> tuple[bytes, dict[str, str]]:
    now = time.time()
    values: dict[str, Any] = {
        "job_id": str(uuid.uuid4()),
        "command": "/bin/sh",
        "args": ["-c", f"echo ran >> {marker}"],
        "timeout_s": 10,
        "created_at": now,
        "deadline": now + 13,
        "target": "h1",
        "caller": "test-publisher",
    } | fields
    payload = encode(ExecJob(**values))
    return payload, signer.headers(payload)


async def first_reply(nc: Client, payload: bytes, headers: dict[str, str] | None) -> dict[str, Any]:
    message: Msg = await nc.request(HOST_SUBJECT, payload, timeout=10, headers=headers)
    reply: dict[str, Any] = json.loads(message.data)
    return reply


def assert_refused(reply: dict[str, Any], reason: str) -> None:
    assert reply["type"] == "nexec.exec.v1.result", reply  # no ack: never taken
    assert reply["status"] == "failed"
    assert reason in reply["error"], reply["error"]
    assert reply["exit_code"] is None


async def test_a_job_the_controller_signed_runs(
    signing_controller: Controller, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    response = await signing_controller.exec("h1", append_line(marker))
    assert response.status == 202
    assert response.body["results"][0]["status"] == "completed", response.body
    assert lines(marker) == 1


async def test_an_unsigned_job_is_refused_and_nothing_runs(
    make_controller: MakeController, live_agent: LiveAgent, signer: JobSigner, tmp_path: Path
) -> None:
    unsigned = await make_controller(delivery_timeout_s=1)  # no signer
    await live_agent(unsigned, "h1", trusted_signers=[signer.public_key])
    marker = tmp_path / "ran"
    response = await unsigned.exec("h1", append_line(marker))
    assert response.status == 202
    [result] = response.body["results"]
    # The refusal goes only to the job's reply subject, which proves nothing of who
    # sent it: the host is no_reply, and the answer quotes the refusal as unverified.
    assert result["status"] == "no_reply"
    assert result["error"].startswith("not acknowledged within 1s; an unverified answer")
    assert "unsigned job: this agent runs only jobs signed" in result["error"]
    assert lines(marker) == 0


async def test_a_job_signed_by_an_untrusted_key_is_refused(
    signing_controller: Controller, nc: Client, signer: JobSigner, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    forger = write_seed_file(tmp_path / "forger.nk")
    payload, headers = signed_job(forger, marker)
    assert_refused(await first_reply(nc, payload, headers), "signed by an untrusted key 'U")
    # Naming the trusted signer does not help without its seed.
    headers[SIGNER_HEADER] = signer.public_key
    assert_refused(await first_reply(nc, payload, headers), "forged or altered job")
    assert lines(marker) == 0


async def test_an_altered_job_is_refused(
    signing_controller: Controller, nc: Client, signer: JobSigner, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    payload, headers = signed_job(signer, marker)
    altered = payload.replace(b"echo ran", b"echo pwn")
    assert altered != payload
    assert_refused(await first_reply(nc, altered, headers), "forged or altered job")
    headers[SIGNATURE_HEADER] = "not base64!"
    assert_refused(await first_reply(nc, payload, headers), "forged job")
    assert lines(marker) == 0


async def test_a_replayed_job_is_refused_and_runs_once(
    signing_controller: Controller, nc: Client, tmp_path: Path
) -> None:
    """Capture the controller's signed job on the wire, then publish it again."""
    captured = await nc.subscribe(HOST_SUBJECT)
    await nc.flush()
    marker = tmp_path / "ran"
    response = await signing_controller.exec("h1", append_line(marker))
    assert response.body["results"][0]["status"] == "completed"
    job_message = await captured.next_msg(timeout=10)
    assert job_message.headers is not None

    replay = await first_reply(nc, job_message.data, job_message.headers)
    assert_refused(replay, "replayed job: this job id was taken")
    assert lines(marker) == 1


async def test_an_any_job_replayed_to_every_agent_is_refused(
    make_controller: MakeController,
    live_agent: LiveAgent,
    nc: Client,
    signer: JobSigner,
    tmp_path: Path,
) -> None:
    """The signature does not cover the subject: the agents check it."""
    controller = await make_controller(job_signing_key_file=tmp_path / "controller.nk")
    for hostname in ("h1", "h2"):
        await live_agent(controller, hostname, trusted_signers=[signer.public_key])
    captured = await nc.subscribe(Subjects().exec_any())
    await nc.flush()
    marker = tmp_path / "ran"
    response = await controller.exec("_any", append_line(marker))
    assert response.body["results"][0]["status"] == "completed"
    job_message = await captured.next_msg(timeout=10)

    inbox = nc.new_inbox()
    replies = await nc.subscribe(inbox)
    await nc.publish(
        Subjects().exec_all(), job_message.data, reply=inbox, headers=job_message.headers
    )
    refusals = [json.loads((await replies.next_msg(timeout=10)).data) for _ in range(2)]
    assert sorted(reply["hostname"] for reply in refusals) == ["h1", "h2"]
    for reply in refusals:
        assert_refused(reply, "replayed job: a job for '_any' must arrive on nexec.exec.any")
    assert lines(marker) == 1


@pytest.mark.parametrize(
    "times",
    [
        # Older than the agent, with the default allowance for clock skew (5 s).
        (30, 10, "replayed job: created before this agent started"),
        (60, -1, "replayed or expired job: its deadline passed"),
    ],
)
async def test_a_signed_job_out_of_its_time_is_refused(
    nc: Client,
    make_agent: MakeAgent,
    signer: JobSigner,
    tmp_path: Path,
    times: tuple[float, float, str],
) -> None:
    """``times``: created how long ago, deadline how far ahead, the refusal."""
    created_ago_s, deadline_in_s, reason = times
    await make_agent("h1", trusted_signers=[signer.public_key])
    marker = tmp_path / "ran"
    now = time.time()
    payload, headers = signed_job(
        signer, marker, created_at=now - created_ago_s, deadline=now + deadline_in_s
    )
    assert_refused(await first_reply(nc, payload, headers), reason)
    assert lines(marker) == 0


@pytest.mark.usefixtures("record_streams")  # the agent records its results
async def test_a_signed_job_replayed_to_a_restarted_agent_is_refused(
    nats_server: NatsServer, nc: Client, make_agent: MakeAgent, signer: JobSigner, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    payload, headers = signed_job(signer, marker)
    first = await make_agent("h1", trusted_signers=[signer.public_key])
    assert (await first_reply(nc, payload, headers))["type"] == "nexec.exec.v1.ack"
    await first.stop()  # lets the job finish: it ran once
    assert lines(marker) == 1
    await make_agent("h1", trusted_signers=[signer.public_key], max_clock_skew_s=0)
    reply = await first_reply(nc, payload, headers)
    assert_refused(reply, "replayed job: created before this agent started")
    assert lines(marker) == 1


@pytest.mark.usefixtures("record_streams")  # the agent records its results
async def test_the_documented_publisher_example_works(
    nats_server: NatsServer, make_agent: MakeAgent, tmp_path: Path
) -> None:
    """docs/examples/publish_signed_job.py, run as its docstring says."""
    publisher_seed = tmp_path / "publisher.nk"
    publisher = write_seed_file(publisher_seed)
    await make_agent("web1.example.com", trusted_signers=[publisher.public_key])
    example = Path(__file__).parent.parent / "docs" / "examples" / "publish_signed_job.py"
    argv = [sys.executable, str(example), nats_server.url, str(publisher_seed),
            "web1.example.com", "echo", "signed"]  # fmt: skip
    completed = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, timeout=30, check=False
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["status"] == "completed"
    assert result["stdout"] == "signed\n"
    assert result["hostname"] == "web1.example.com"
