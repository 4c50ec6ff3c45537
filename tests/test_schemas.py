"""Wire types, subject names and the JSON Schema export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentd.run.output import CappedOutput
from schemas.decoding import WireError, decode_job, decode_result
from schemas.messages import ExecJob, ResultStatus, encode
from schemas.subjects import Subjects, decode_token, encode_token
from schemas.targets import TargetKind, parse_target

SUBJECT_TOKEN_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "name", ["web1", "web1.example.com", "web1_example_com", "a-b", "é", "x.y_z", "_"]
)
def test_token_encoding_is_subject_safe_and_reversible(name: str) -> None:
    token = encode_token(name)
    assert set(token) <= SUBJECT_TOKEN_CHARS
    assert decode_token(token) == name


def test_token_encoding_never_collides() -> None:
    names = ["a.b", "a_b", "a_2Eb", "a-b", "a_2eb", "ab"]
    assert len({encode_token(name) for name in names}) == len(names)


def test_subjects_follow_the_documented_tree() -> None:
    subjects = Subjects("nexec")
    assert subjects.exec_host("web1.example.com") == "nexec.exec.host.web1_2Eexample_2Ecom"
    assert subjects.exec_label("role", "web") == "nexec.exec.label.role.web"
    assert subjects.exec_all() == "nexec.exec.all"
    assert subjects.exec_any() == "nexec.exec.any"
    assert subjects.registry_bucket() == "nexec_agents"
    assert subjects.registry_key("h1.example.com") == "h1_2Eexample_2Ecom"
    assert subjects.job_record("j-1") == "nexec.record.job.j-1"
    assert subjects.result_record("j-1", "h.x") == "nexec.record.result.j-1.h_2Ex"
    assert subjects.running("h.x") == "nexec.running.h_2Ex"
    assert Subjects("acme.nexec").jobs_stream() == "acme_nexec_jobs"
    assert subjects.exec_target(parse_target("role:web,env:dev")) == "nexec.exec.label.env.dev"
    with pytest.raises(ValueError, match="invalid subject prefix"):
        Subjects("bad prefix")


def test_targets_parse() -> None:
    assert parse_target("_any").kind is TargetKind.ANY
    assert parse_target("_all").kind is TargetKind.ALL
    assert parse_target("h.example.com").hostname == "h.example.com"
    labels = parse_target("role:web,env:dev")
    assert labels.labels == (("env", "dev"), ("role", "web"))
    assert labels.matches("x", {"env": "dev", "role": "web", "extra": "1"})
    assert not labels.matches("x", {"env": "dev"})


def test_messages_carry_versioned_tags_and_old_readers_ignore_new_fields() -> None:
    job = ExecJob(job_id="j", command="ls", deadline=1.0, target="_all")
    wire = json.loads(encode(job))
    assert wire["type"] == "nexec.exec.v1.job"
    wire["a_future_field"] = {"anything": True}
    assert decode_job(json.dumps(wire).encode()) == job
    result = decode_result(
        b'{"type": "nexec.exec.v1.result", "job_id": "j", "hostname": "h", "status": "no_reply"}'
    )
    assert result.status is ResultStatus.NO_REPLY
    assert result.stdout == "" and result.exit_code is None
    with pytest.raises(WireError):
        decode_job(b'{"type": "nexec.exec.v2.job", "job_id": "j"}')


def test_python_m_schemas_writes_every_wire_type(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "schemas", str(tmp_path)], check=True, timeout=60)
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [
        "http-api.json",
        "nexec.agent.v1.heartbeat.json",
        "nexec.agent.v1.running.json",
        "nexec.audit.v1.record.json",
        "nexec.exec.v1.ack.json",
        "nexec.exec.v1.job.json",
        "nexec.exec.v1.output.json",
        "nexec.exec.v1.result.json",
        "nexec.fleet.v1.pause.json",
        "nexec.idempotency.v1.claim.json",
        "nexec.job.v1.cancel.json",
        "nexec.job.v1.record.json",
        "nexec.rollout.v1.state.json",
    ]
    http_bodies = json.loads((tmp_path / "http-api.json").read_text())["$defs"]
    assert {"ExecRequest", "ShellRequest", "JobView", "NodeList", "AuditList"} <= set(http_bodies)
    job_schema = json.loads((tmp_path / "nexec.exec.v1.job.json").read_text())
    definition = job_schema["$defs"]["ExecJob"]
    assert definition["properties"]["type"] == {"enum": ["nexec.exec.v1.job"]}
    assert set(definition["required"]) == {"type", "job_id", "command", "deadline", "target"}


def test_capped_output_under_the_cap_keeps_multibyte_characters_whole() -> None:
    output = CappedOutput(10)
    output.feed("abcdéxyz".encode())  # 9 bytes: é straddles the head/tail halves
    assert not output.truncated
    assert output.text() == "abcdéxyz"


@pytest.mark.parametrize(
    "subject",
    [
        "nexec.record.result._61bc.web1",
        "nexec.record.result.abc.we_62",
        "nexec.ack._61bc.h1",
        "nexec.ack.a+b.h1",  # no escape, yet not a token encode_token makes
        "nexec.record.result.j1.h\u00e9",
    ],
)
def test_per_host_subjects_must_carry_names_in_their_one_encoding(subject: str) -> None:
    subjects = Subjects()
    with pytest.raises(ValueError, match="one encoding"):
        if ".ack." in subject:
            subjects.parse_ack(subject)
        else:
            subjects.parse_host_record(subject)
