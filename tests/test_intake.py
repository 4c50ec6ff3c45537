"""Whether an agent takes a job, decided without NATS: every refusal of
tests/test_signed_jobs.py (which checks the same through a real nats-server), and
the others an agent gives before it runs a job."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest

from agentd.config import AgentConfig
from agentd.dedupe import RecentJobs
from agentd.intake import (
    REPLAYED_ID,
    Admitted,
    Ignored,
    Intake,
    IntakeRules,
    JobMessage,
    Refused,
    intake,
    repeat_refusal,
    usable_reply,
)
from agentd.run.policy import Policy
from runtime.signing import SIGNATURE_HEADER, SIGNER_HEADER, JobSigner, create_seed
from schemas.messages import ExecJob, encode
from schemas.subjects import Subjects

NOW = 1_800_000_000.0
"""The wall clock of these tests."""
STARTED_AT = NOW - 100
"""When the agent under test started."""
HOST_SUBJECT = "nexec.exec.host.h1"


@pytest.fixture
def signer() -> JobSigner:
    return JobSigner(create_seed())


def rules(signer: JobSigner | None = None, **changes: Any) -> IntakeRules:
    """Agent h1 (label role:web), trusting ``signer`` if one is given."""
    config = AgentConfig(
        hostname="h1",
        labels={"role": "web"},
        trusted_signers=[signer.public_key] if signer else [],
    )
    return dataclasses.replace(IntakeRules.from_config(config, started_at=STARTED_AT), **changes)


def payload(**fields: Any) -> bytes:
    values: dict[str, Any] = {
        "job_id": str(uuid.uuid4()),
        "command": "/bin/true",
        "timeout_s": 10,
        "created_at": NOW,
        "deadline": NOW + 13,
        "target": "h1",
        "caller": "test-publisher",
    } | fields
    return encode(ExecJob(**values))


def signed(signer: JobSigner, subject: str = HOST_SUBJECT, **fields: Any) -> JobMessage:
    data = payload(**fields)
    return JobMessage(data, subject, signer.headers(data))


def reason(verdict: Intake) -> str | None:
    """The refusal of ``verdict``, before or after the job's id is taken."""
    if isinstance(verdict, Refused):
        return verdict.reason
    assert isinstance(verdict, Admitted), verdict
    return verdict.refusal


def assert_refused(verdict: Intake, expected: str) -> None:
    """Refused before its id is taken (only the message's reply subject hears it)."""
    assert isinstance(verdict, Refused), verdict
    assert expected in verdict.reason, verdict.reason


# The cases of tests/test_signed_jobs.py


def test_a_job_the_controller_signed_is_taken(signer: JobSigner) -> None:
    message = signed(signer)
    verdict = intake(message, rules(signer), NOW)
    assert isinstance(verdict, Admitted)
    assert verdict.refusal is None
    assert encode(verdict.job) == message.data


def test_an_unsigned_job_is_refused(signer: JobSigner) -> None:
    verdict = intake(JobMessage(payload(), HOST_SUBJECT), rules(signer), NOW)
    assert_refused(verdict, "unsigned job: this agent runs only jobs signed")
    only_signer = JobMessage(payload(), HOST_SUBJECT, {SIGNER_HEADER: signer.public_key})
    assert_refused(intake(only_signer, rules(signer), NOW), "unsigned job")


def test_a_job_signed_by_an_untrusted_key_is_refused(signer: JobSigner) -> None:
    forger = JobSigner(create_seed())
    message = signed(forger)
    assert_refused(intake(message, rules(signer), NOW), "signed by an untrusted key 'U")
    # Naming the trusted signer does not help without its seed.
    assert message.headers is not None
    headers = {**message.headers, SIGNER_HEADER: signer.public_key}
    named = JobMessage(message.data, HOST_SUBJECT, headers)
    assert_refused(intake(named, rules(signer), NOW), "forged or altered job")


def test_an_altered_job_is_refused(signer: JobSigner) -> None:
    message = signed(signer, args=["ran"])
    altered = message.data.replace(b'"ran"', b'"pwn"')
    assert altered != message.data
    verdict = intake(JobMessage(altered, HOST_SUBJECT, message.headers), rules(signer), NOW)
    assert_refused(verdict, "forged or altered job: the signature does not match its content")
    assert message.headers is not None
    for signature, refusal in [
        ("not base64!", "forged job: the signature is not base64"),
        ("AAAA", "forged job: the signature is not 64 bytes"),
    ]:
        headers = {**message.headers, SIGNATURE_HEADER: signature}
        verdict = intake(JobMessage(message.data, HOST_SUBJECT, headers), rules(signer), NOW)
        assert_refused(verdict, refusal)


def test_a_replayed_job_is_refused_once_its_id_was_taken(signer: JobSigner) -> None:
    """The agent takes the id of every admitted job in its :class:`RecentJobs`; a
    repeat asking elsewhere for the answer is a replay, a repeat of the same delivery
    (NATS delivering twice) or of an unsigned job is only dropped."""
    message = signed(signer)
    verdict = intake(message, rules(signer), NOW)
    assert isinstance(verdict, Admitted)
    assert verdict.refusal is None
    recent = RecentJobs(clock=lambda: NOW)
    assert recent.take(verdict.job.job_id, verdict.job.deadline, "_INBOX.first") is None
    earlier = recent.take(verdict.job.job_id, verdict.job.deadline, "_INBOX.replay")
    assert earlier is not None
    assert repeat_refusal(signed=True, reply="_INBOX.replay", earlier_reply=earlier.reply) == (
        "replayed job: this job id was taken"
    )
    assert REPLAYED_ID == "replayed job: this job id was taken"
    assert repeat_refusal(signed=True, reply=earlier.reply, earlier_reply=earlier.reply) is None
    assert repeat_refusal(signed=False, reply="_INBOX.replay", earlier_reply=earlier.reply) is None


def test_an_any_job_replayed_to_every_agent_is_refused(signer: JobSigner) -> None:
    """The signature does not cover the subject: intake checks it."""
    taken = intake(signed(signer, "nexec.exec.any", target="_any"), rules(signer), NOW)
    assert isinstance(taken, Admitted)
    replayed = signed(signer, "nexec.exec.all", target="_any")
    assert_refused(
        intake(replayed, rules(signer), NOW),
        "replayed job: a job for '_any' must arrive on nexec.exec.any, not nexec.exec.all",
    )
    on_a_label = signed(signer, "nexec.exec.label.role.web", target="h1")
    assert_refused(intake(on_a_label, rules(signer), NOW), "must arrive on nexec.exec.host.h1")


@pytest.mark.parametrize(
    "times",
    [
        # Older than the agent, with the default allowance for clock skew (5 s).
        (30, 10, "replayed job: created before this agent started"),
        (60, -1, "replayed or expired job: its deadline passed"),
        (60, 0, "replayed or expired job: its deadline passed"),
    ],
)
def test_a_signed_job_out_of_its_time_is_refused(
    signer: JobSigner, times: tuple[float, float, str]
) -> None:
    """``times``: created how long ago, deadline how far ahead, the refusal."""
    created_ago_s, deadline_in_s, refusal = times
    just_started = rules(signer, started_at=NOW)
    message = signed(signer, created_at=NOW - created_ago_s, deadline=NOW + deadline_in_s)
    assert_refused(intake(message, just_started, NOW), refusal)


def test_a_signed_job_replayed_to_a_restarted_agent_is_refused(signer: JobSigner) -> None:
    message = signed(signer, created_at=NOW - 1)
    assert isinstance(intake(message, rules(signer, started_at=NOW - 2), NOW), Admitted)
    restarted = rules(signer, started_at=NOW, clock_skew_s=0)
    assert_refused(
        intake(message, restarted, NOW), "replayed job: created before this agent started"
    )
    within_skew = rules(signer, started_at=NOW)  # 5 s allowed
    assert isinstance(intake(message, within_skew, NOW), Admitted)


def test_an_agent_that_trusts_no_signer_takes_unsigned_jobs_of_any_time() -> None:
    """Without signatures the subject and creation time are not checked; a passed
    deadline is refused later, when the job would start (``expired before start``)."""
    message = JobMessage(payload(created_at=0.0, deadline=NOW - 1), "nexec.exec.all")
    verdict = intake(message, rules(), NOW)
    assert isinstance(verdict, Admitted)
    assert verdict.refusal is None


# The other refusals before a job runs


@pytest.mark.parametrize(
    "data",
    [b"not json", b'{"job_id": "x"}', b"[" * 10_000 + b"]" * 10_000, b""],
    ids=["not-json", "untagged", "nested", "empty"],
)
def test_a_message_that_is_no_job_is_refused_without_an_id(data: bytes) -> None:
    verdict = intake(JobMessage(data, HOST_SUBJECT), rules(), NOW)
    assert isinstance(verdict, Refused)
    assert verdict.job_id == ""
    assert verdict.reason.startswith("invalid job message: ")


def test_a_job_with_out_of_range_fields_is_refused_as_no_job() -> None:
    message = json.loads(payload())
    for change in ({"job_id": ""}, {"job_id": "x" * 129}, {"timeout_s": -5}, {"timeout_s": 10**9}):
        data = json.dumps(message | change).encode()
        verdict = intake(JobMessage(data, HOST_SUBJECT), rules(), NOW)
        assert isinstance(verdict, Refused)
        assert verdict.reason.startswith("invalid job message: ")
        assert f"$.{next(iter(change))}" in verdict.reason


def test_a_job_with_a_bad_target_is_refused_with_its_id() -> None:
    data = payload(job_id="j-1", target="role:")
    verdict = intake(JobMessage(data, HOST_SUBJECT), rules(), NOW)
    assert isinstance(verdict, Refused)
    assert verdict.job_id == "j-1"
    assert verdict.reason.startswith("invalid job target: ")


@pytest.mark.parametrize(
    ("target", "subject", "taken"),
    [
        ("h1", HOST_SUBJECT, True),
        ("h2", "nexec.exec.host.h2", False),
        ("role:web", "nexec.exec.label.role.web", True),
        ("role:db", "nexec.exec.label.role.db", False),
        ("role:web,zone:a", "nexec.exec.label.role.web", False),
        ("_all", "nexec.exec.all", True),
        ("_any", "nexec.exec.any", True),
    ],
)
def test_a_job_for_other_agents_is_ignored(
    signer: JobSigner, target: str, subject: str, taken: bool
) -> None:
    """Dropped unseen, signed or not, before its signature is even checked."""
    for agent_rules, message in [
        (rules(), JobMessage(payload(target=target), subject)),
        (rules(signer), signed(signer, subject, target=target)),
        (rules(signer), JobMessage(payload(target=target), subject)),  # unsigned
    ]:
        verdict = intake(message, agent_rules, NOW)
        if taken:
            assert not isinstance(verdict, Ignored)
        else:
            assert verdict == Ignored()


@pytest.mark.parametrize("trusted", [False, True])
def test_a_deadline_too_far_ahead_is_refused_once_taken(signer: JobSigner, trusted: bool) -> None:
    fields = {"deadline": NOW + 10**6}
    message = signed(signer, **fields) if trusted else JobMessage(payload(**fields), HOST_SUBJECT)
    verdict = intake(message, rules(signer if trusted else None), NOW)
    assert isinstance(verdict, Admitted)
    assert verdict.refusal == "invalid job: deadline too far ahead"
    near = intake(JobMessage(payload(deadline=NOW + 360), HOST_SUBJECT), rules(), NOW)
    assert reason(near) is None


def test_a_job_past_its_deliver_by_is_refused_once_taken() -> None:
    late = intake(JobMessage(payload(deliver_by=NOW - 6), HOST_SUBJECT), rules(), NOW)
    assert reason(late) == (
        "not started: it reached this agent after its deliver_by (the requester gave up)"
    )
    within_skew = intake(JobMessage(payload(deliver_by=NOW - 4), HOST_SUBJECT), rules(), NOW)
    assert reason(within_skew) is None
    no_skew = rules(clock_skew_s=0)
    assert reason(intake(JobMessage(payload(deliver_by=NOW - 1), HOST_SUBJECT), no_skew, NOW))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"command": "/bin/true\u0000x"}, "command"),
        ({"args": ["ok", "a\u0000b"]}, "args[1]"),
        ({"cwd": "/tmp\u0000"}, "cwd"),
        ({"env": {"A": "b\u0000"}}, "env['A']"),
        ({"env": {"A\u0000": "b"}}, "env['A\\x00']"),
    ],
)
def test_a_nul_byte_is_refused_once_taken(fields: dict[str, Any], field: str) -> None:
    verdict = intake(JobMessage(payload(**fields), HOST_SUBJECT), rules(), NOW)
    assert isinstance(verdict, Admitted)
    assert verdict.refusal == f"invalid job: NUL byte in {field}"


def test_a_forged_job_is_refused_before_anything_else(signer: JobSigner) -> None:
    """A forged job never takes an id, even when it would be refused later anyway."""
    forger = JobSigner(create_seed())
    message = signed(forger, deadline=NOW + 10**6, command="/bin/true\u0000")
    assert_refused(intake(message, rules(signer), NOW), "signed by an untrusted key")


def test_intake_does_not_depend_on_the_wall_clock(signer: JobSigner) -> None:
    """The decision reads only its ``now``: the same message at two times."""
    message = signed(signer, deadline=NOW + 13)
    assert reason(intake(message, rules(signer), NOW)) is None
    assert reason(intake(message, rules(signer), NOW + 13)) == (
        "replayed or expired job: its deadline passed"
    )


def test_an_agent_answers_only_on_a_reply_subject_outside_nexec() -> None:
    subjects = Subjects()
    assert usable_reply(subjects, "_INBOX.abc") == "_INBOX.abc"
    assert usable_reply(subjects, "") == ""
    for subject in ("nexec.result.j.h1", "nexec.ack.j.h1", "$JS.API.STREAM.INFO.x", "$KV.a.b"):
        assert usable_reply(subjects, subject) == ""


# The policy's refusals come after the job was taken, when it would start.


def policy(**changes: Any) -> Policy:
    values: dict[str, Any] = {
        "allow_shell": False,
        "allowed_commands": frozenset(),
        "base_env": {"PATH": "/usr/bin:/bin"},
        "allow_request_env": False,
        "run_as_user": None,
        "run_as_group": None,
    } | changes
    return Policy(**values)


@pytest.mark.parametrize(
    ("changes", "fields", "refusal"),
    [
        ({}, {"shell": True}, "shell is not allowed on this agent (allow_shell)"),
        ({}, {"env": {"A": "1"}}, "per-request env is not allowed (allow_request_env)"),
        (
            {"allow_request_env": True},
            {"env": {"PATH": "/x"}},
            "request env may not set PATH (base_env, loader)",
        ),
        (
            {"allow_request_env": True},
            {"env": {"LD_PRELOAD": "x"}},
            "request env may not set LD_PRELOAD (base_env, loader)",
        ),
        (
            {"allowed_commands": frozenset({"/bin/true"})},
            {"command": "/bin/rm"},
            "'/bin/rm' is not in allowed_commands",
        ),
        (
            {"allowed_commands": frozenset({"/bin/true"})},
            {"command": "bin/true"},
            "a relative path cannot be checked against allowed_commands",
        ),
    ],
)
def test_the_policy_refuses_what_it_does_not_allow(
    changes: dict[str, Any], fields: dict[str, Any], refusal: str
) -> None:
    job = ExecJob(job_id="j", deadline=NOW, target="h1", **({"command": "true"} | fields))
    assert policy(**changes).refusal(job) == f"refused by policy: {refusal}"
    assert (
        policy(allow_shell=True, allow_request_env=True).refusal(
            ExecJob(job_id="j", deadline=NOW, target="h1", command="true", env={"A": "1"})
        )
        is None
    )
