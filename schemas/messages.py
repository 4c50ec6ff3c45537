"""Messages on NATS: the job, the per-host result and the agent heartbeat.

Every message is a frozen, keyword-only msgspec Struct, JSON-encoded, with a
versioned ``type`` tag. Compatibility rule: new fields get defaults; existing
fields never change type or meaning. A change that cannot follow that rule
gets a new tag (``...v2...``).
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.limits import MAX_TIMEOUT_S

MAX_JOB_ID_LENGTH = 128


class ResultStatus(enum.StrEnum):
    """The closed set of outcomes for one host."""

    COMPLETED = "completed"
    """The process ran and exited, with any exit code."""
    FAILED = "failed"
    """It could not run: not found, bad cwd, refused, agent error, expired."""
    TIMEOUT = "timeout"
    """Killed at its timeout; the output read until then is kept."""
    CANCELLED = "cancelled"
    """Stopped on request or because the agent shut down."""
    NO_REPLY = "no_reply"
    """Set by the controller: an expected agent never answered."""
    SKIPPED = "skipped"
    """Set by the controller: a rollout stopped (too many hosts failed, or it was
    cancelled) before this host started; it never ran."""


class ReplyRoute(enum.StrEnum):
    """Where an agent sends its answers to a job."""

    REPLY = "reply"
    """The ack and the result to the message's reply subject (the result is also
    recorded). For programs that publish jobs themselves; any agent that received
    the job could answer there, so a reply's hostname is only as trustworthy as
    every agent that received the job."""
    RECORD = "record"
    """The ack on the agent's own ack subject, the result only on its own record
    subject: both carry the host's token, which NATS lets only that host publish.
    Controllers use this route."""


class ExecJob(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.exec.v1.job"):
    """A command to run, published on an ``exec`` subject with a reply subject."""

    job_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_JOB_ID_LENGTH)]
    """Unique id (a UUID); an agent never runs the same job_id twice."""
    command: Annotated[str, msgspec.Meta(min_length=1)]
    """The executable: a name looked up on the agent's PATH, or a path."""
    args: list[str] = []
    cwd: str | None = None
    timeout_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_TIMEOUT_S)] = 30
    """Seconds the process may run before it is killed (1-300)."""
    deadline: float
    """Unix time (seconds) after which nobody waits for the result: an agent
    refuses a job that reaches it, or leaves its queue, later than this."""
    target: str
    """The target as requested (hostname, ``_any``, ``_all`` or labels); an
    agent that receives a job whose target it does not match drops it."""
    caller: str = ""
    """Name of the API key (never the key) or of the direct publisher."""
    created_at: float = 0.0
    shell: bool = False
    """True: ``command`` is one string run by ``/bin/sh -c`` (``args`` unused),
    if the agent's policy allows shell."""
    env: dict[str, str] = {}
    """Added to the agent's clean base environment, if its policy allows."""
    reply_route: ReplyRoute = ReplyRoute.REPLY
    """Where the agent answers: see :class:`ReplyRoute`."""
    deliver_by: float | None = None
    """Unix time (seconds) after which the requester no longer waits for an agent to
    take the job (publish time plus the delivery timeout): an agent that receives it
    later than this (plus its ``max_clock_skew_s``) refuses it, so a host reported
    ``no_reply`` never runs it. None: no such check (direct publishers)."""


class ExecResult(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.exec.v1.result"
):
    """What one host did with one job; the reply to an :class:`ExecJob`."""

    job_id: str
    hostname: str
    status: ResultStatus
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    """The process's exit status; negative ``-N`` when a signal N ended it;
    null when no process ran."""
    duration_ms: int = 0
    changed: bool = False
    """True when a process was started."""
    error: str | None = None
    """Why the host failed, timed out or did not reply; null on completion."""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_bytes: int = 0
    """How many bytes the process wrote to stdout, kept or not."""
    stderr_bytes: int = 0


class ExecAck(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.exec.v1.ack"):
    """Sent to the job's reply subject the moment an agent takes a job, before it runs.

    A host that has not acknowledged within the delivery timeout is reported
    ``no_reply`` without waiting for the command's own timeout.
    """

    job_id: str
    hostname: str


OUTPUT_STREAMS = ("stdout", "stderr")
"""The only stream names an output chunk may carry (checked in :mod:`schemas.decoding`)."""


class OutputChunk(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.exec.v1.output"
):
    """Live output of a running job, recorded as it is produced (the first
    ``output_cap_bytes`` of each stream; the result keeps head and tail)."""

    job_id: str
    hostname: str
    stream: str
    """``stdout`` or ``stderr`` (:data:`OUTPUT_STREAMS`); a chunk naming any other is
    refused by its decoder."""
    offset: int
    """Bytes of this stream before this chunk."""
    data: str
    """UTF-8 with replacement, decoded across chunk boundaries."""


class AuditRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.audit.v1.record"
):
    """One audited HTTP request: every exec, shell, cancel and job delete, and every 401
    and 403. A request that acts is recorded before it acts; if the action then fails, a
    second record with the failure follows, with the same ``job_id``.

    Never holds a key or a secret: the caller is the key's name.
    """

    time: float
    key_name: str
    """Empty when no known key was presented (401)."""
    source: str
    """The client's address."""
    method: str
    path: str
    status: int
    outcome: str
    """``accepted`` or the error title (``forbidden``, ``not found``...)."""
    target: str = ""
    command: str = ""
    args: list[str] = []
    shell: bool = False
    job_id: str = ""
    dry_run: bool = False
    """A dry run (``?dry_run=true``): every check ran, nothing was recorded or published."""


class CancelRequest(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.job.v1.cancel"
):
    """Broadcast to every agent: stop the job if you are running it or hold it queued."""

    job_id: str
    caller: str = ""


class JobRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.job.v1.record"
):
    """What a controller stores about a job before it publishes it (rewritten with
    ``published: false`` when the publish did not happen)."""

    job: ExecJob
    expected_hosts: list[str] | None
    """The agents the job was expected on (from the registry at publish time);
    null for ``_any`` (any one agent)."""
    published: bool = True
    """False when the controller wrote the record but never published the job (the
    publish or the audit record failed): no agent got it, and the job view shows it
    as ``not_published``."""
    no_replies: dict[str, str] = {}
    """The controller's verdicts: each host it decided ``no_reply`` when the job's
    collection ended, with the error it gave the caller (``_any`` for an ``_any`` job
    nobody took). Written before the caller is answered; a result the host records
    later is shown marked late, next to this verdict (docs/jobs.md)."""
    taken_by: str | None = None
    """For ``_any``: the host that took the job (acknowledged it first), written by the
    controller only when another host recorded a result for it during its collection;
    null otherwise (the first host whose result is recorded took it; docs/security.md)."""
    rollout: RolloutPlan | None = None
    """Set for a rollout: its resolved settings. The record's job is then the
    rollout's whole job (its ``deadline`` the rollout's worst-case end); each host is
    sent a copy with its own deadline, counted from its own start (docs/jobs.md)."""


class RolloutPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A rollout's settings, resolved against the hosts its target resolved to."""

    batch_size: int
    """At most this many hosts run at once (a sliding window)."""
    max_failures: int
    """Once more hosts than this failed, no further host starts."""
    pause_s: float = 0.0
    """Seconds between one host's start and the next (after the first window)."""
    delivery_timeout_s: float = 2.0
    """Seconds each host has to acknowledge its copy of the job."""
    max_hosts: int | None = None
    """The calling key's ``max_hosts``: a host starts only once one of the key's host
    slots is taken (None: the key has no limit)."""


class RolloutState(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.rollout.v1.state"
):
    """The value of a rollout's entry in the rollouts bucket: how far it got. Only the
    controller driving the rollout writes it, each write checked against the revision
    it read; a host is written here as started before its job is published."""

    started: dict[str, float] = {}
    """Each host started, with its own deadline (Unix seconds)."""
    finished: dict[str, bool] = {}
    """Each host whose result is in, and whether it failed."""
    stopped: str | None = None
    """Why no further host starts: too many failures, a cancel; None while it goes on."""
    cancelled_by: str | None = None
    """The key name that cancelled the rollout."""
    ended: bool = False
    """Every host is decided (the skipped ones recorded)."""
    driver: str = ""
    """The controller driving the rollout (its instance id)."""
    lease_until: float = 0.0
    """Unix time until which ``driver`` holds the rollout; it renews its lease while it
    drives, and any controller may take over a rollout whose lease has passed."""
    idempotency_entry: str | None = None
    """The idempotency bucket key its request claimed (a hash; None without an
    ``Idempotency-Key``): written again at the end, so it lasts ``job_retention_s``
    from then, whichever controller ends the rollout."""


class Heartbeat(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.agent.v1.heartbeat"
):
    """An agent saying it is alive, published every ``interval_s`` seconds."""

    hostname: str
    instance_id: str
    """Random per agent process: changes when the agent restarts."""
    labels: dict[str, str] = {}
    version: str = ""
    started_at: float = 0.0
    sent_at: float = 0.0
    interval_s: float = 5.0
    """Seconds until the next heartbeat; readers expire the agent after three."""
    jobs_running: int = 0
    load_avg: list[float] = []
    """1, 5 and 15 minute load averages of the host."""


MAX_RUNNING_JOB_IDS = 10_000
"""Most job ids one running report lists (~400 KB of UUIDs); an agent holding more
sends several reports."""


class RunningReport(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.agent.v1.running"
):
    """An agent saying which jobs it holds (taken and not yet answered: running, or
    waiting for a slot), one message per agent every ``interval_s`` while it holds any.
    A controller gives up on a host that acknowledged a job and then fell silent."""

    hostname: str
    job_ids: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_JOB_ID_LENGTH)]],
        msgspec.Meta(max_length=MAX_RUNNING_JOB_IDS),
    ]
    interval_s: float = 2.0
    """Seconds until the next report (while any job is held)."""
    sent_at: float = 0.0


class IdempotencyClaim(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.idempotency.v1.claim"
):
    """The value of an idempotency bucket entry: the job a (key name, Idempotency-Key)
    pair started, and a hash of the request that started it."""

    job_id: str
    request_sha256: str


class FleetPauseRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.fleet.v1.pause"
):
    """The value of the fleet bucket's pause entry, written by ``POST /fleet/pause`` and
    ``POST /fleet/resume``: while ``paused``, every controller refuses exec and shell."""

    paused: bool
    by: str
    """The name of the key that paused (or resumed) the fleet."""
    since: float
    """When it did (Unix seconds)."""


WIRE_TYPES: tuple[type[msgspec.Struct], ...] = (
    ExecJob,
    ExecAck,
    ExecResult,
    Heartbeat,
    JobRecord,
    CancelRequest,
    OutputChunk,
    AuditRecord,
    IdempotencyClaim,
    RunningReport,
    FleetPauseRecord,
    RolloutState,
)

Reply = ExecAck | ExecResult
"""What an agent sends to a job's reply subject: first an ack, then the result."""

_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """JSON-encode any nexec message."""
    return _encoder.encode(message)


class HostSlots(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag="nexec.slots.v1.key"
):
    """The value of one API key's entry in the host-slots bucket: the hosts running its
    commands now. Each write is checked against the revision read, so two controllers
    never both take the last slot; a lease whose deadline passed no longer counts."""

    leases: dict[str, float] = {}
    """``<job id>/<hostname>`` to that host's deadline (Unix seconds)."""
