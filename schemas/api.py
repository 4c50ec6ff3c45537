"""Bodies of the HTTP API, shared by the controller and its OpenAPI document."""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from schemas.limits import (
    DEFAULT_TIMEOUT_S,
    MAX_ROLLOUT_PAUSE_S,
    MAX_TIMEOUT_S,
    MIN_TIMEOUT_S,
)
from schemas.messages import AuditRecord, ExecResult, Heartbeat

MAX_ENV_VARS = 64

# The rules of the request strings, as patterns: the OpenAPI document carries them and
# controller/http/validation.py enforces them (re.fullmatch, with a message of its own).
# Explicit character classes only: regex engines disagree on what \s and \d match.
WHITESPACE_CHARS = "\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
"""A character class body: what ``str.isspace`` calls whitespace."""
NO_NUL_PATTERN = r"^[^\x00]*$"
COMMAND_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE_CHARS}][^\x00]*$"
"""Not blank (something besides whitespace), no NUL byte."""
ABSOLUTE_PATH_PATTERN = r"^/[^\x00]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _pattern(pattern: str, description: str | None = None) -> msgspec.Meta:
    """A string rule for the document only: msgspec's own check would word the error
    its way, so the validator checks the same pattern and names the field and rule."""
    return msgspec.Meta(extra_json_schema={"pattern": pattern}, description=description)


BATCH_PERCENT_PATTERN = r"^([1-9][0-9]?|100)%$"
"""A rollout's ``batch_size`` as a share of the hosts: 1% to 100%."""
FAILURES_PERCENT_PATTERN = r"^([0-9]|[1-9][0-9]|100)%$"
"""A rollout's ``max_failures`` as a share of the hosts: 0% to 100%."""


class RolloutRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Run the command a few hosts at a time, in hostname order, and stop when hosts fail
    (docs/jobs.md, "Rollouts")."""

    batch_size: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | Annotated[str, _pattern(BATCH_PERCENT_PATTERN)],
        msgspec.Meta(
            description="At most this many hosts run at once (a sliding window): a "
            'whole number >= 1, or "N%" (1-100) of the hosts, rounded up, at least 1.'
        ),
    ]
    max_failures: Annotated[
        Annotated[int, msgspec.Meta(ge=0)] | Annotated[str, _pattern(FAILURES_PERCENT_PATTERN)],
        msgspec.Meta(
            description="Once more hosts than this failed (status not completed, or exit "
            'code not 0), no further host starts: a whole number >= 0, or "N%" of '
            "the hosts, rounded down (default 0)."
        ),
    ] = 0
    pause_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            le=MAX_ROLLOUT_PAUSE_S,
            description="Seconds between one host's start and the next, after the first "
            "window (default 0).",
        ),
    ] = 0.0


class _CommandRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the exec and shell bodies share."""

    cwd: Annotated[str, _pattern(ABSOLUTE_PATH_PATTERN, "Working directory (absolute).")] | None = (
        None
    )
    timeout: Annotated[
        int,
        msgspec.Meta(
            ge=MIN_TIMEOUT_S,
            le=MAX_TIMEOUT_S,
            description="Seconds before the command is killed (default 30).",
        ),
    ] = DEFAULT_TIMEOUT_S
    delivery_timeout: (
        Annotated[
            float,
            msgspec.Meta(
                ge=0.1,
                le=60,
                description="Seconds a host has to acknowledge the job before it is "
                "reported no_reply (default: the controller's, 2).",
            ),
        ]
        | None
    ) = None
    env: Annotated[
        dict[Annotated[str, _pattern(ENV_NAME_PATTERN)], Annotated[str, _pattern(NO_NUL_PATTERN)]],
        msgspec.Meta(
            max_length=MAX_ENV_VARS,
            description="Variables added to the agent's clean base environment "
            "(names [A-Za-z_][A-Za-z0-9_]*), if the agent's policy allows.",
        ),
    ] = {}
    rollout: RolloutRequest | None = None
    """Run on the hosts a few at a time (not with ``_any``)."""


class ExecRequest(_CommandRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /node/{hostname}/command/exec``: one executable, no shell."""

    command: Annotated[
        str, msgspec.Meta(min_length=1), _pattern(COMMAND_PATTERN, "The executable name or path.")
    ]
    args: Annotated[
        list[Annotated[str, _pattern(NO_NUL_PATTERN)]],
        msgspec.Meta(description="Command arguments."),
    ] = []


class ShellRequest(_CommandRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /node/{hostname}/command/shell``: one string for ``/bin/sh -c``."""

    command: Annotated[
        str, msgspec.Meta(min_length=1), _pattern(COMMAND_PATTERN, "The shell command line.")
    ]


class ExecResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an exec request: one result per host, sorted by hostname."""

    job_id: str
    results: list[ExecResult]
    complete: bool = True
    """False when ``?wait`` ended before every expected host answered: the
    rest comes with ``GET /job/{job_id}``."""


class DryRunResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an exec or shell request with ``?dry_run=true``: every check ran,
    nothing was recorded or published."""

    hosts: list[str]
    """The live hosts the target resolves to, sorted (for ``_any``: every live host
    that could take the job; exactly one of them would run it)."""
    count: int
    """How many hosts ``hosts`` lists."""
    batch_size: int
    """How many of them would run the command at once: ``count`` (1 for ``_any``).
    With rollouts, the rollout's resolved batch size."""


class JobState(enum.StrEnum):
    """The overall state of a job, derived from its hosts' results."""

    RUNNING = "running"
    """Some expected host has not answered and the deadline has not passed."""
    COMPLETED = "completed"
    """Every host's process ran and exited (any exit code)."""
    PARTIAL = "partial"
    """Some hosts completed, others did not (failed, timeout, no_reply...)."""
    FAILED = "failed"
    """No host completed."""
    CANCELLED = "cancelled"
    """Every host that did not complete was cancelled."""
    STOPPED = "stopped"
    """A rollout stopped by ``max_failures``: too many hosts failed, the hosts not
    started are ``skipped``."""
    NOT_PUBLISHED = "not_published"
    """The job was recorded but never published (the publish or its audit record
    failed): no agent got it, and it has no results."""


class RolloutProgress(msgspec.Struct, frozen=True, kw_only=True):
    """How far a rollout got (``GET /job/{id}``'s ``rollout``)."""

    batch_size: int
    """The resolved batch size."""
    max_failures: int
    """The resolved failure budget."""
    pause_s: float
    pending: int
    """Hosts not started yet."""
    running: int
    """Hosts started, without a result yet."""
    finished: int
    """Hosts with a result (failed ones included, skipped ones not)."""
    failed: int
    """Finished hosts whose status is not completed, or whose exit code is not 0."""
    skipped: int
    stopped: str | None = None
    """Why no further host starts (too many failures, a cancel); null while it goes on."""
    max_hosts: int | None = None
    """The calling key's ``max_hosts``: each host starts only once one of the key's host
    slots is free (null: the key has no such limit)."""


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /job/{id}``: the request, its state and every host's result."""

    job_id: str
    state: JobState
    complete: bool
    target: str
    command: str
    args: list[str]
    cwd: str | None
    timeout: int
    caller: str
    created_at: float
    deadline: float
    expected_hosts: list[str] | None
    results: list[ExecResult]
    late: dict[str, str] = {}
    """Hosts whose own result (in ``results``) was recorded after the controller had
    decided them ``no_reply`` and told the caller so, each with that verdict's error:
    the record keeps both."""
    rollout: RolloutProgress | None = None
    """A rollout's settings and progress; null for a job without a rollout."""
    shell: bool = False
    """True for a job of ``POST /node/{hostname}/command/shell``: ``command`` is one line
    for ``/bin/sh -c`` (``args`` is empty)."""


class JobEnd(msgspec.Struct, frozen=True, kw_only=True):
    """The last event of ``GET /job/{id}/output``: the job's state once it is done."""

    job_id: str
    state: JobState


class JobSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One job in ``GET /job``; its state and results come with ``GET /job/{id}``."""

    job_id: str
    target: str
    command: str
    args: list[str]
    caller: str
    created_at: float
    expected_hosts: int | None
    shell: bool = False
    """True for a shell job (see :class:`JobView`)."""


class JobList(msgspec.Struct, frozen=True, kw_only=True):
    jobs: list[JobSummary]
    next_cursor: str | None
    """Pass as ``?cursor=`` for the next, older page; null on the last page."""


class NodeView(msgspec.Struct, frozen=True, kw_only=True):
    """One live agent as ``GET /node`` shows it."""

    hostname: str
    labels: dict[str, str]
    version: str
    started_at: float
    last_seen: float
    jobs_running: int
    load_avg: list[float]

    @classmethod
    def from_heartbeat(cls, heartbeat: Heartbeat) -> NodeView:
        return cls(
            hostname=heartbeat.hostname,
            labels=heartbeat.labels,
            version=heartbeat.version,
            started_at=heartbeat.started_at,
            last_seen=heartbeat.sent_at,
            jobs_running=heartbeat.jobs_running,
            load_avg=heartbeat.load_avg,
        )


class AuditList(msgspec.Struct, frozen=True, kw_only=True):
    records: list[AuditRecord]
    next_cursor: str | None


class NodeList(msgspec.Struct, frozen=True, kw_only=True):
    nodes: list[NodeView]


class WhoAmI(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /whoami``: the presented key's name and what it may do."""

    name: str
    permissions: list[str]
    """Sorted."""
    targets: list[str]
    """Its target patterns; empty: every target."""
    max_hosts: int | None
    """At most this many hosts run its commands at once; null: no limit."""
    expires_at: float | None
    """Unix seconds from which the key is refused; null: never."""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every error response: a short message, the precise reason, the HTTP status."""

    error: str
    details: str
    code: int


class FleetPause(msgspec.Struct, frozen=True, kw_only=True):
    """Who paused the fleet, and when (Unix seconds)."""

    by: str
    since: float


class FleetStatus(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /fleet``, and the answer to ``POST /fleet/pause`` and ``/fleet/resume``."""

    paused: FleetPause | None
    """Null while the fleet runs; while paused, every controller refuses exec and shell
    with 503."""


class CancelAllResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to ``POST /job/cancel-all``: the running jobs a cancel was sent for."""

    job_ids: list[str]
    complete: bool
    """False when the walk over the job records stopped at its read bound before it
    reached the oldest job that could still run: call again for older ones."""


class HealthResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /healthz`` (readiness): 200 with ``status: ok`` while requests can succeed,
    else 503 with every reason they cannot in ``reasons``. No live agent is not a reason."""

    status: str
    nats: str
    agents: int
    reasons: list[str] = msgspec.field(default_factory=list)
    paused: FleetPause | None = None
    """Who paused the fleet and when; null while it runs. A paused fleet is not a
    reason: the controller works, it refuses exec and shell only."""
