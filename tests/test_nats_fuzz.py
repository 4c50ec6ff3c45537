"""NATS fuzz: thousands of malformed messages of many kinds on every subject nexec reads
(each agent subject, the registry, the record and ack subjects), then the fleet still
answers a normal exec, every reader still runs, and nothing ran; and a flood of
answers on a job's reply subject while the controller waits.

The corpus is deterministic (one seeded ``random.Random``). Every fuzz job that could
decode would ``touch`` a marker file, which no agent's policy allows; one agent also
requires signatures, so garbage signature headers meet a verifier.

Synchronisation, without sleeping: NATS delivers a subscription's messages in order,
so once an agent answers a sentinel job published last on a subject, it has dealt with
every fuzz message before it there (on ``any``, sentinels go out until every agent
answered one). Malformed cancels are counted in the agents' log. The registry has dealt
with every fuzz entry once it observed a heartbeat each real agent sent after an
acknowledged write that came last. Acks and results go through the controller's readers
before the final exec's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentd.agent import Agent
from controller.appkeys import AGENT_WATCH, DISPATCHER, REGISTRY_FEED
from runtime.signing import JobSigner, write_seed_file
from schemas.decoding import decode_cancel
from schemas.subjects import Subjects
from schemas.targets import parse_target
from tests.helpers import STARTUP_TIMEOUT_S, Controller, MakeAgent, MakeController
from tests.nats_fuzz_corpus import (
    AGENTS,
    PER_TARGET,
    TAGS,
    Corpus,
    decodes,
    dump,
    heartbeat_corpus,
    templates,
)

SUBJECTS = Subjects()
SEED = 10
HEARTBEAT_S = 1.0
"""The real agents' heartbeat interval: the registry sentinel."""
RECORD_TIMEOUT_S = 30.0
"""The agents' wait for JetStream to acknowledge a result: here the fuzz publisher, three
agents and the controller share one event loop, which the fuzz keeps busy for seconds."""
FUZZED_JOB = "fuzzed-job"
"""A job id whose record, results and output subjects get a share of the fuzz."""
MAX_LOG_LINE = 1000
"""Untrusted text is logged short: no line of ours is longer, whatever came in."""
FORBIDDEN_REPLIES = [
    SUBJECTS.result_record("fuzz-reply", "web1"),
    SUBJECTS.ack("fuzz-reply", "web1"),
    f"$KV.{SUBJECTS.registry_bucket()}.fuzz-reply",
    f"$JS.API.STREAM.DELETE.{SUBJECTS.results_stream()}",
    f"$JS.API.STREAM.PURGE.{SUBJECTS.jobs_stream()}",
]
"""Reply subjects no agent may answer on; the test watches them (and never publishes there)."""


class MalformedCancels(logging.Handler):
    """Counts the agents' "malformed cancel request" lines; set once ``expected`` came."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.seen = 0
        self.done = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("malformed cancel request ignored"):
            self.seen += 1
            if self.seen >= self.expected:
                self.done.set()


async def publish_all(
    nc: Client,
    subject: str,
    messages: list[tuple[bytes, dict[str, str] | None]],
    rng: random.Random,
) -> None:
    replies = [None, None, "_INBOX.fuzz-nobody", *FORBIDDEN_REPLIES]
    for data, headers in messages:
        await nc.publish(subject, data, reply=rng.choice(replies) or "", headers=headers)
    await nc.flush(timeout=30)


async def watch_forbidden_replies(nc: Client) -> list[Msg]:
    seen: list[Msg] = []

    async def keep(msg: Msg) -> None:
        seen.append(msg)

    for subject in FORBIDDEN_REPLIES:
        await nc.subscribe(subject, cb=keep)
    return seen


async def sentinel_answered(
    nc: Client, signer: JobSigner, corpus: Corpus, target: str, hosts: set[str]
) -> None:
    """Publish a signed job on ``target``'s subject (again, for ``_any``) until each of
    ``hosts`` answered one: then it dealt with everything published there before."""
    subject = SUBJECTS.exec_target(parse_target(target))
    inbox = nc.new_inbox()
    replies = await nc.subscribe(inbox)
    waiting = set(hosts)
    for _ in range(100):
        job = corpus.job(target) | {"reply_route": "reply", "deadline": time.time() + 20}
        payload = dump(job)
        await nc.publish(subject, payload, reply=inbox, headers=signer.headers(payload))
        for _ in range(1 if target == "_any" else len(hosts)):
            result = await next_result(replies, job["job_id"])
            assert result["status"] == "failed"
            assert result["error"].startswith("refused by policy"), result
            waiting.discard(result["hostname"])
        if not waiting:
            await replies.unsubscribe()
            return
    raise AssertionError(f"no answer on {subject} from {sorted(waiting)}")


async def next_result(replies: Any, job_id: str) -> dict[str, Any]:
    while True:
        reply = json.loads((await replies.next_msg(timeout=STARTUP_TIMEOUT_S)).data)
        if reply["type"] == TAGS["result"] and reply["job_id"] == job_id:
            return reply  # type: ignore[no-any-return]


@pytest.fixture
async def fleet(
    make_controller: MakeController, make_agent: MakeAgent, tmp_path: Path
) -> tuple[Controller, dict[str, Agent], JobSigner]:
    """A signing controller; agents allowed only ``echo``, db1 requiring signatures."""
    signer = write_seed_file(tmp_path / "controller.nk")
    controller = await make_controller(job_signing_key_file=tmp_path / "controller.nk")
    agents = {
        hostname: await make_agent(
            hostname,
            labels=labels,
            allowed_commands=["echo"],
            trusted_signers=[signer.public_key] if hostname.startswith("db") else [],
            heartbeat_interval_s=HEARTBEAT_S,
            record_timeout_s=RECORD_TIMEOUT_S,
        )
        for hostname, labels in AGENTS.items()
    }
    await controller.wait_for_agents(*AGENTS)
    return controller, agents, signer


def agent_targets() -> list[tuple[str, str]]:
    """(subject, target) of each agent job subject."""
    hosts = sorted(AGENTS)
    labels = [("role", "web"), ("role", "db")]
    return [
        *((SUBJECTS.exec_host(h), h) for h in hosts),
        *((SUBJECTS.exec_label(k, v), f"{k}:{v}") for k, v in labels),
        (SUBJECTS.exec_all(), "_all"),
        (SUBJECTS.exec_any(), "_any"),
    ]


async def fuzz_agents(nc: Client, corpus: Corpus) -> int:
    """``PER_TARGET`` messages to each agent subject (each host, each label, all, any
    and cancel); returns how many of the cancel requests are malformed."""
    rng = corpus.rng
    for subject, target in agent_targets():
        messages = corpus.messages(
            partial(corpus.job, target), corpus.hostile_jobs(target), PER_TARGET
        )
        await publish_all(nc, subject, messages, rng)
    cancels = corpus.messages(
        lambda: {"type": TAGS["cancel"], "job_id": str(rng.random()), "caller": "fuzz"},
        [{"job_id": ""}, {"caller": 7}, {"job_id": "x" * 10_000}],
        PER_TARGET,
    )
    await publish_all(nc, SUBJECTS.cancel(), cancels, rng)
    return sum(1 for data, _ in cancels if not decodes(decode_cancel, data))


async def fuzz_records(nc: Client, corpus: Corpus) -> None:
    """``PER_TARGET`` messages to each kind of record subject, to the ack and running subjects,
    on the subjects of real and unknown hosts and jobs, and on malformed tokens."""
    rng = corpus.rng
    hosts = [*sorted(AGENTS), "ghost"]

    def job_id() -> str:
        return FUZZED_JOB if rng.random() < 0.1 else str(rng.random())

    subject_of: dict[str, Callable[[], str]] = {
        "result": lambda: SUBJECTS.result_record(job_id(), rng.choice(hosts)),
        "chunk": lambda: SUBJECTS.output_record(job_id(), rng.choice(hosts)),
        "ack": lambda: SUBJECTS.ack(job_id(), rng.choice(hosts)),
        "running": lambda: SUBJECTS.running(rng.choice(hosts)),
        "record": lambda: SUBJECTS.job_record(job_id()),
        "audit": SUBJECTS.audit_record,
    }
    for kind, (template, hostile) in templates(corpus).items():
        for data, headers in corpus.messages(template, hostile, PER_TARGET):
            subject = subject_of[kind]()
            if rng.random() < 0.05:
                subject = subject.rsplit(".", 1)[0] + rng.choice([".x_zz", "._", ".x_FF"])
            await nc.publish(subject, data, headers=headers)
    await nc.flush(timeout=30)


async def fuzz_registry(nc: Client, corpus: Corpus) -> None:
    keys = [SUBJECTS.registry_key(h) for h in AGENTS]
    junk = ["_5Fall", "h_zz", "ghost", "a.b.c", "x" * 300, "=", "web1_2F", "-"]
    bucket = SUBJECTS.registry_bucket()
    for key, data, headers in heartbeat_corpus(corpus, keys, junk):
        await nc.publish(f"$KV.{bucket}.{key}", data, headers=headers)
    await nc.flush(timeout=30)


async def test_the_fleet_survives_a_fuzz_of_every_subject(
    fleet: tuple[Controller, dict[str, Agent], JobSigner],
    nc: Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller, agents, signer = fleet
    caplog.set_level(logging.INFO, logger="nexec.controller.registry")
    corpus = Corpus(random.Random(SEED), tmp_path / "ran", signer)
    forbidden = await watch_forbidden_replies(nc)
    cancels = MalformedCancels(expected=0)
    logging.getLogger("nexec.agentd").addHandler(cancels)
    try:
        cancels.expected = len(agents) * await fuzz_agents(nc, corpus)
        await fuzz_records(nc, corpus)
        await fuzz_registry(nc, corpus)
        await asyncio.wait_for(cancels.done.wait(), STARTUP_TIMEOUT_S)
    finally:
        logging.getLogger("nexec.agentd").removeHandler(cancels)
    for target, hosts in [
        *((h, {h}) for h in AGENTS),
        ("role:web", {"web1", "web2"}),
        ("role:db", {"db1.example.com"}),
        ("_all", set(AGENTS)),
        ("_any", set(AGENTS)),
    ]:
        await sentinel_answered(nc, signer, corpus, target, hosts)
    await registry_caught_up(nc, controller)

    assert not (tmp_path / "ran").exists()
    assert {h: a.counters.started for h, a in agents.items()} == dict.fromkeys(AGENTS, 0)
    assert all(agent.counters.received > 3 * PER_TARGET for agent in agents.values())
    assert forbidden == []
    assert controller.app[REGISTRY_FEED].following
    assert controller.registry.refused > PER_TARGET // 2  # the rest were replaced or refused
    assert controller.app[AGENT_WATCH].dropped["invalid running report"] > 0
    assert [r.getMessage() for r in caplog.records if "agent left" in r.getMessage()] == []
    nodes = await controller.request("GET", "/node")
    assert nodes.status == 200, nodes.body
    assert sorted(node["hostname"] for node in nodes.body["nodes"]) == sorted(AGENTS)

    await assert_the_fleet_serves(controller)
    assert {h: a.counters.started for h, a in agents.items()} == {
        "web1": 2, "web2": 2, "db1.example.com": 1,
    }  # fmt: skip
    assert not (tmp_path / "ran").exists()
    ours = [record for record in caplog.records if record.name.startswith("nexec")]
    assert [(r.name, r.getMessage()) for r in ours if r.levelno >= logging.ERROR] == []
    longest = max(ours, key=lambda record: len(record.getMessage())).getMessage()
    assert len(longest) < MAX_LOG_LINE, longest[:300]


async def registry_caught_up(nc: Client, controller: Controller) -> None:
    """Until every real agent's heartbeat sent after the last (acknowledged) fuzz
    entry was observed: the watcher dealt with every fuzz entry before it."""
    await nc.jetstream().publish(f"$KV.{SUBJECTS.registry_bucket()}.h_zz", b"last")
    mark = time.time()
    await controller.registry.wait_until(
        lambda registry: all(
            (heartbeat := registry.get(hostname)) is not None and heartbeat.sent_at > mark
            for hostname in AGENTS
        ),
        STARTUP_TIMEOUT_S,
    )


async def assert_the_fleet_serves(controller: Controller) -> None:
    """A normal exec on ``_all`` and on a label completes everywhere, and every read
    of records, nodes, audit and health answers."""
    for target, hosts in [("_all", sorted(AGENTS)), ("role:web", ["web1", "web2"])]:
        response = await controller.exec(target, {"command": "echo", "args": ["hi"]})
        assert response.status == 202, response.body
        assert [(r["hostname"], r["status"], r["stdout"]) for r in response.body["results"]] == [
            (host, "completed", "hi\n") for host in hosts
        ]
    job_id = response.body["job_id"]
    job = await controller.request("GET", f"/job/{job_id}")
    assert job.status == 200, job.body
    assert job.body["results"] == response.body["results"]
    jobs = await controller.request("GET", "/job")
    assert jobs.status == 200, jobs.body
    assert job_id in [listed["job_id"] for listed in jobs.body["jobs"]]
    fuzzed = await controller.request("GET", f"/job/{FUZZED_JOB}")
    assert fuzzed.status in (200, 404), fuzzed.body
    audit = await controller.request("GET", "/audit")
    assert audit.status == 200, audit.body
    assert job_id in [record["job_id"] for record in audit.body["records"]]
    async with controller.session.get(controller.url + "/healthz") as health:
        assert health.status == 200, await health.text()


def heartbeat(hostname: str) -> bytes:
    """A valid registry entry: a host that is listed but never answers."""
    now = time.time()
    return dump(
        {
            "type": TAGS["heartbeat"], "hostname": hostname, "instance_id": "silent",
            "labels": {}, "version": "0", "started_at": now, "sent_at": now, "interval_s": 60.0,
        }
    )  # fmt: skip


async def test_answers_on_a_jobs_reply_subject_are_dropped_and_quoted_short(
    make_controller: MakeController,
    make_agent: MakeAgent,
    nc: Client,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any agent that receives a job may answer on its reply subject: here a rogue one
    floods it while the controller still waits for a silent host. Every answer is dropped
    and logged short, the silent host's ``no_reply`` quotes none of them (any agent that
    received the job could have sent them), the job completes."""
    controller = await make_controller()
    await make_agent("web1", allowed_commands=["echo"])
    await nc.jetstream().publish(SUBJECTS.registry_entry("silent1"), heartbeat("silent1"))
    await controller.wait_for_agents("web1", "silent1")
    spy = await nc.subscribe(SUBJECTS.exec_all())
    running = asyncio.ensure_future(controller.exec("_all", {"command": "echo", "args": ["hi"]}))
    job = await spy.next_msg(timeout=STARTUP_TIMEOUT_S)
    job_id = json.loads(job.data)["job_id"]
    corpus = Corpus(random.Random(SEED), tmp_path / "ran", write_seed_file(tmp_path / "k.nk"))
    forged = "x" * 900_000 + "\n2026-01-01 00:00:00 INFO nexec: all is well"
    claim = {"job_id": job_id, "hostname": "silent1"}
    first = dump({"type": TAGS["result"], **claim, "status": "failed", "error": forged})
    messages = corpus.messages(
        lambda: {"type": TAGS["result"], **claim, "status": "completed"},
        [{"hostname": "web1"}, {"hostname": forged[-60:]}, {"type": TAGS["ack"]}],
        PER_TARGET,
    )
    for data, headers in [(first, None), *messages]:
        await nc.publish(job.reply, data, headers=headers)
    await nc.flush(timeout=30)
    response = await running

    assert response.status == 202, response.body
    results = {r["hostname"]: r for r in response.body["results"]}
    assert results["web1"]["status"] == "completed"
    assert results["silent1"]["status"] == "no_reply"
    # Any agent that received an _all job could have sent those answers: none is quoted.
    assert results["silent1"]["error"] == "not acknowledged within 2s"
    assert len(results["silent1"]["error"]) < MAX_LOG_LINE
    recorded = await controller.request("GET", f"/job/{job_id}")
    assert recorded.status == 200, recorded.body
    assert recorded.body["results"] == response.body["results"]
    assert controller.app[DISPATCHER].dropped["answer on the reply subject"] >= 1
    ours = [record for record in caplog.records if record.name.startswith("nexec")]
    assert [(r.name, r.getMessage()) for r in ours if r.levelno >= logging.ERROR] == []
    longest = max(ours, key=lambda record: len(record.getMessage())).getMessage()
    assert len(longest) < MAX_LOG_LINE, longest[:300]
