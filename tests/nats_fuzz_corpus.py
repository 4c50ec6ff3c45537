"""A deterministic corpus of malformed and hostile nexec messages, for tests/test_nats_fuzz.py.

Every kind of damage (:attr:`Corpus.kinds`) is applied in turn to a valid-looking
message of the wanted type; every third message also carries garbage headers.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.signing import SIGNATURE_HEADER, SIGNER_HEADER, JobSigner
from schemas.decoding import WireError
from schemas.registry_entry import decode_heartbeat_from, registry_key_hostname
from schemas.subjects import Subjects

SUBJECTS = Subjects()
PER_TARGET = 2000
"""Messages to each agent subject (host, label, all, any, cancel), the registry, each
record subject kind and the ack subjects."""
HUGE_BYTES = 900_000
"""A huge field: near NATS's max_payload (1 MiB); a few per target keep the volume low."""
HUGE_PER_TARGET = 2
"""Huge messages per target; the other "huge" ones are 4 KB."""
AGENTS = {"web1": {"role": "web"}, "web2": {"role": "web"}, "db1.example.com": {"role": "db"}}
TAGS = {
    "job": "nexec.exec.v1.job",
    "result": "nexec.exec.v1.result",
    "ack": "nexec.exec.v1.ack",
    "chunk": "nexec.exec.v1.output",
    "cancel": "nexec.job.v1.cancel",
    "record": "nexec.job.v1.record",
    "audit": "nexec.audit.v1.record",
    "heartbeat": "nexec.agent.v1.heartbeat",
    "running": "nexec.agent.v1.running",
}


class Corpus:
    """Malformed messages of many kinds, each built on a valid-looking template."""

    def __init__(self, rng: random.Random, marker: Path, signer: JobSigner) -> None:
        self.rng = rng
        self.marker = marker
        self.signer = signer
        self.huge_left = 0
        self.kinds: list[Callable[[dict[str, Any], list[dict[str, Any]]], bytes]] = [
            lambda t, h: b"",
            lambda t, h: self.rng.randbytes(self.rng.randint(1, 300)),
            self.invalid_utf8,
            lambda t, h: self.text().encode(),
            lambda t, h: self.rng.choice([b"[]", b"123", b'"nexec"', b"null", b"[{}]", b"1e999"]),
            self.nested,
            lambda t, h: dump({k: v for k, v in t.items() if k != "type"}),
            lambda t, h: dump(t | {"type": self.rng.choice([*TAGS.values(), 7, None, "v2"])}),
            self.wrong_types,
            lambda t, h: dump(t)[: self.rng.randint(1, len(dump(t)) - 1)],
            self.huge,
            lambda t, h: dump(t | self.rng.choice(h)),
        ]

    def messages(
        self, template: Callable[[], dict[str, Any]], hostile: list[dict[str, Any]], count: int
    ) -> list[tuple[bytes, dict[str, str] | None]]:
        """``count`` messages, every kind in turn; every third one with garbage headers."""
        self.huge_left = HUGE_PER_TARGET
        built = [self.kinds[i % len(self.kinds)](template(), hostile) for i in range(count)]
        return [(data, self.headers(data) if i % 3 == 0 else None) for i, data in enumerate(built)]

    def text(self, length: int = 40) -> str:
        return "".join(self.rng.choice('{}[]":,\\ az09\u00e9\u2603\n\t') for _ in range(length))

    def invalid_utf8(self, template: dict[str, Any], _: list[dict[str, Any]]) -> bytes:
        data = dump(template)
        cut = self.rng.randint(0, len(data))
        return (
            data[:cut]
            + self.rng.choice([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf8\x88"])
            + data[cut:]
        )

    def nested(self, template: dict[str, Any], _: list[dict[str, Any]]) -> bytes:
        opening, closing = self.rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        depth = self.rng.randint(2900, 3100)
        return dump(template)[:-1] + b',"zz":' + opening * depth + b"1" + closing * depth + b"}"

    def wrong_types(self, template: dict[str, Any], _: list[dict[str, Any]]) -> bytes:
        field = self.rng.choice(sorted(template))
        wrong = [None, 1, -1, 2**70, 2.5, "x", [], {}, [1, "a"], {"a": 1}, True]
        return dump(template | {field: self.rng.choice(wrong)})

    def huge(self, template: dict[str, Any], _: list[dict[str, Any]]) -> bytes:
        size = HUGE_BYTES if self.huge_left > 0 else 4000
        self.huge_left -= 1
        field = self.rng.choice(sorted(k for k in template if k != "type"))
        return dump(template | {field: "x" * size})

    def headers(self, data: bytes) -> dict[str, str]:
        garbage = self.rng.choice(["", "A", "=" * 5, "not base64!", "U" + "A" * 55, "U" * 5000])
        return self.rng.choice(
            [
                {SIGNER_HEADER: garbage, SIGNATURE_HEADER: garbage},
                {SIGNER_HEADER: self.signer.public_key, SIGNATURE_HEADER: garbage or "x"},
                self.signer.headers(data + b" "),  # a real signature, of another payload
                {"KV-Operation": garbage or "PUT-ISH"},
                {"Nats-TTL": garbage or "-1"},
            ]
        )

    def job(self, target: str) -> dict[str, Any]:
        now = time.time()
        return {
            "type": TAGS["job"],
            "job_id": str(uuid.UUID(int=self.rng.getrandbits(128))),
            "command": "touch",
            "args": [str(self.marker)],
            "timeout_s": 5,
            "deadline": now + 20,
            "target": target,
            "created_at": now,
            "reply_route": self.rng.choice(["reply", "record"]),
        }

    def hostile_jobs(self, target: str) -> list[dict[str, Any]]:
        """Jobs that decode: for another host, expired, too far ahead, with NUL bytes,
        through a shell or a path: each would touch the marker if it ran."""
        marker = str(self.marker)
        return [
            {"target": "ghost"},
            {"target": "role:ghost"},
            {"deadline": time.time() + 10**9},
            {"deadline": time.time() - 100},
            {"deadline": 0},
            {"command": "touch\0"},
            {"args": [marker, "a\0b"]},
            {"cwd": "/tmp\0"},
            {"env": {"A\0": "b"}},
            {"shell": True, "command": f"touch {marker}"},
            {"command": "/usr/bin/touch"},
            {"command": "./touch"},
            {"command": "echo", "shell": True, "args": [f"; touch {marker}"]},
            {"target": target, "job_id": "x" * 128},
            {"env": {"PATH": "/tmp", "LD_PRELOAD": "/tmp/x.so"}},
        ]


def dump(message: Any) -> bytes:
    return json.dumps(message).encode()


def templates(
    corpus: Corpus,
) -> dict[str, tuple[Callable[[], dict[str, Any]], list[dict[str, Any]]]]:
    """For each record and ack kind: a valid-looking message, and hostile variants."""
    rng = corpus.rng

    def job_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128)))

    def speaker() -> dict[str, Any]:
        return {"job_id": job_id(), "hostname": rng.choice(sorted(AGENTS))}

    others = [{"hostname": "ghost"}, {"job_id": "another"}, {"hostname": ""}, {"job_id": ""}]
    return {
        "result": (
            lambda: {"type": TAGS["result"], **speaker(), "status": "completed", "exit_code": 0},
            [*others, {"status": "no_reply"}, {"status": "bogus"}, {"exit_code": 2**70}],
        ),
        "chunk": (
            lambda: {
                "type": TAGS["chunk"],
                **speaker(),
                "stream": "stdout",
                "offset": 0,
                "data": "x",
            },
            [*others, {"stream": "stdin"}, {"offset": -1}, {"offset": 2**64}],
        ),
        "ack": (lambda: {"type": TAGS["ack"], **speaker()}, [*others, {"extra": [1] * 100}]),
        "running": (
            lambda: {
                "type": TAGS["running"],
                "hostname": speaker()["hostname"],
                "job_ids": [job_id()],
            },
            [
                {"hostname": "ghost"},
                {"hostname": ""},
                {"job_ids": [""]},
                {"job_ids": "x"},
                {"job_ids": ["x"] * 10_001},
            ],
        ),
        "record": (
            lambda: {"type": TAGS["record"], "job": corpus.job("_all"), "expected_hosts": ["web1"]},
            [
                {"job": {}},
                {"job": None},
                {"expected_hosts": "web1"},
                {"job": {"type": TAGS["job"]}},
            ],
        ),
        "audit": (
            lambda: {
                "type": TAGS["audit"],
                "time": time.time(),
                "key_name": "admin",
                "source": "x",
                "method": "POST",
                "path": "/",
                "status": 202,
                "outcome": "accepted",
            },
            [{"time": "now"}, {"status": "202"}, {"args": "a"}, {"time": 10**400}],
        ),
    }


def heartbeat_corpus(
    corpus: Corpus, keys: list[str], junk: list[str]
) -> list[tuple[str, bytes, dict[str, str] | None]]:
    """Registry writes under live agents' keys (a third) and junk keys, most of them
    new (the bucket keeps one value per key: the watcher may not see a replaced one);
    none is a valid entry."""
    rng = corpus.rng
    key_of_message: list[str] = []

    def template() -> dict[str, Any]:
        count = len(key_of_message)
        key = rng.choice(keys) if count % 3 == 0 else f"{rng.choice(junk)}-{count}"
        key_of_message.append(key)
        return {
            "type": TAGS["heartbeat"], "hostname": key.replace("_2E", "."), "instance_id": "i",
            "labels": {"role": "web"}, "version": "0", "started_at": time.time(),
            "sent_at": time.time(), "interval_s": 1.0, "jobs_running": 0, "load_avg": [0.0] * 3,
        }  # fmt: skip

    hostile: list[dict[str, Any]] = [
        {"hostname": "ghost"}, {"interval_s": 10**9}, {"interval_s": 0}, {"interval_s": -1},
        {"labels": {f"k{i}": "v" for i in range(100)}}, {"labels": {"a b": "c"}},
        {"load_avg": [1.0] * 10}, {"jobs_running": -1}, {"version": "v" * 300},
        {"hostname": "_all"}, {"instance_id": "i" * 1000},
    ]  # fmt: skip
    made = corpus.messages(template, hostile, PER_TARGET * 3 // 2)
    kept = [
        (key, data, headers)
        for key, (data, headers) in zip(key_of_message, made, strict=True)
        if not valid_entry(key, data)
    ][:PER_TARGET]
    assert len(kept) == PER_TARGET
    return kept


def valid_entry(key: str, data: bytes) -> bool:
    try:
        decode_heartbeat_from(data, hostname=registry_key_hostname(key))
    except WireError:
        return False
    return True


def decodes(decode: Callable[[bytes], object], data: bytes) -> bool:
    try:
        decode(data)
    except WireError:
        return False
    return True
