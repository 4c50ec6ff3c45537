"""Whether an agent takes a job: one pure decision, and where the agent may answer.

:func:`intake` decides from the message alone (its bytes, subject and headers),
the agent's :class:`IntakeRules` and the time; it sends nothing and remembers
nothing, so every refusal is tested without NATS (``tests/test_intake.py``).
The agent acts on its answer:

- :class:`Ignored`: the job addresses other agents; it is dropped unseen.
- :class:`Refused`: refused before its id is taken. The answer goes only to the
  message's reply subject: the job may be forged or replayed, so it must not write
  into the record of the job whose id it carries.
- :class:`Admitted`: its id is taken (a repeat is not run twice, see
  :func:`repeat_refusal`); then it is refused by its reply route when ``refusal``
  says why, or run.

The signature covers the payload only (the target, the job id and the deadline);
the subject, a replay and the time are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agentd.config import AgentConfig
from runtime.signing import SignatureRejected, SignatureVerifier
from schemas.decoding import WireError, decode_job
from schemas.limits import MAX_DEADLINE_AHEAD_S
from schemas.messages import ExecJob
from schemas.subjects import Subjects
from schemas.targets import Target, TargetSyntaxError, parse_target

REPLAYED_ID = "replayed job: this job id was taken"


@dataclass(frozen=True, slots=True)
class JobMessage:
    """A job message as it reached the agent, untrusted."""

    data: bytes
    subject: str
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class IntakeRules:
    """What of the agent's settings and state the decision needs."""

    hostname: str
    labels: Mapping[str, str]
    subjects: Subjects
    verifier: SignatureVerifier | None
    """None: the agent trusts no signer and runs unsigned jobs."""
    clock_skew_s: float
    started_at: float
    """When the agent started (wall clock): a signed job created before is a replay."""

    @classmethod
    def from_config(cls, config: AgentConfig, *, started_at: float) -> IntakeRules:
        """The rules of an agent with these settings, started at ``started_at``.

        Raises:
            SigningKeyError: one of ``trusted_signers`` is not a user public nkey.
        """
        verifier = SignatureVerifier(config.trusted_signers) if config.trusted_signers else None
        return cls(
            hostname=config.hostname,
            labels=config.labels,
            subjects=config.subjects,
            verifier=verifier,
            clock_skew_s=config.max_clock_skew_s,
            started_at=started_at,
        )


@dataclass(frozen=True, slots=True)
class Ignored:
    """Not addressed to this agent."""


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused before its id is taken; ``job_id`` is "" when the message is no job."""

    job_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Admitted:
    """Take the job's id; then refuse it for ``refusal`` by its reply route, or run it."""

    job: ExecJob
    refusal: str | None = None


Intake = Ignored | Refused | Admitted


def intake(message: JobMessage, rules: IntakeRules, now: float) -> Intake:
    """What the agent does with ``message`` at wall-clock time ``now``. Never raises."""
    try:
        job = decode_job(message.data)
    except WireError as exc:
        return Refused("", f"invalid job message: {exc}")
    try:
        target = parse_target(job.target)
    except TargetSyntaxError as exc:
        return Refused(job.job_id, f"invalid job target: {exc}")
    if not target.matches(rules.hostname, rules.labels):
        return Ignored()
    if rules.verifier is not None and (
        refusal := signed_job_refusal(message, job, target, rules, now=now)
    ):
        return Refused(job.job_id, refusal)
    return Admitted(job, job_refusal(job, now, clock_skew_s=rules.clock_skew_s))


def signed_job_refusal(
    message: JobMessage, job: ExecJob, target: Target, rules: IntakeRules, *, now: float
) -> str | None:
    """With signatures required: why this job must not run, or None when it may.

    Raises:
        ValueError: ``rules.verifier`` is None (signatures are not required).
    """
    if rules.verifier is None:
        raise ValueError("signed_job_refusal needs rules.verifier")
    try:
        rules.verifier.verify(message.data, message.headers)
    except SignatureRejected as exc:
        return str(exc)
    expected_subject = rules.subjects.exec_target(target)
    if message.subject != expected_subject:
        # The signature does not cover the subject: an `_any` job published
        # again on `_all` would otherwise reach every agent.
        return (
            f"replayed job: a job for {job.target!r} must arrive on {expected_subject}, "
            f"not {message.subject}"
        )
    if job.deadline <= now:
        return "replayed or expired job: its deadline passed"
    if job.created_at < rules.started_at - rules.clock_skew_s:
        return "replayed job: created before this agent started"
    return None


def repeat_refusal(*, signed: bool, reply: str, earlier_reply: str) -> str | None:
    """A job whose id was taken before never runs again; this says whether the repeat
    is also refused (a replay: signatures are required and someone else asks for the
    answer) or only dropped (None: NATS delivered it twice)."""
    return REPLAYED_ID if signed and reply != earlier_reply else None


def job_refusal(job: ExecJob, now: float, *, clock_skew_s: float) -> str | None:
    """Why the agent must refuse ``job`` whatever its policy, or None."""
    if job.deadline > now + MAX_DEADLINE_AHEAD_S:
        return "invalid job: deadline too far ahead"
    if job.deliver_by is not None and now > job.deliver_by + clock_skew_s:
        return "not started: it reached this agent after its deliver_by (the requester gave up)"
    if field := _field_with_nul(job):
        return f"invalid job: NUL byte in {field}"
    return None


def _field_with_nul(job: ExecJob) -> str | None:
    """The first field that holds a NUL byte (no process can receive one), or None."""
    if "\0" in job.command:
        return "command"
    for index, arg in enumerate(job.args):
        if "\0" in arg:
            return f"args[{index}]"
    if job.cwd is not None and "\0" in job.cwd:
        return "cwd"
    for name, value in job.env.items():
        if "\0" in name or "\0" in value:
            return f"env[{name!r}]"
    return None


def usable_reply(subjects: Subjects, reply: str) -> str:
    """``reply``, or "" when an agent must not answer there: a record, ack, KV or
    JetStream API subject (anything under the prefix or starting with ``$``), where an
    answer would write into another job's record or JetStream itself."""
    return "" if subjects.is_nexec_subject(reply) else reply
