"""The checks a decoded job must pass before an agent takes it (besides its signature
and its id), and where the agent may send answers."""

from __future__ import annotations

from schemas import ExecJob, Subjects
from schemas.limits import MAX_DEADLINE_AHEAD_S


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
