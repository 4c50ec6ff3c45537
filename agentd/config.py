"""The agent's settings: one typed object, parsed once in ``main``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pydantic

from runtime.daemon import DaemonSettings
from runtime.settings import setting
from runtime.signing import decode_public_key
from schemas.registry_entry import (
    MAX_AGENT_LABELS,
    MAX_HEARTBEAT_INTERVAL_S,
    MIN_HEARTBEAT_INTERVAL_S,
)
from schemas.subjects import DEFAULT_PREFIX
from schemas.targets import parse_label, validate_hostname

DEFAULT_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


class AgentConfig(DaemonSettings):
    """Settings of ``nexec-agentd``: each field, declared with :func:`setting`, is also
    ``--<name>``, ``NEXEC_<NAME>``, a config-file key and a row of docs/operations.md."""

    hostname: str = setting(
        default_factory=socket.gethostname,
        help="the agent's name and its subject token",
        shown_default="this machine's hostname",
        example="web1.example.com",
    )
    labels: dict[str, str] = setting(
        default_factory=dict,
        max_length=MAX_AGENT_LABELS,
        help="labels that `key:value` targets select; repeat the flag for each",
        details='In the file: a list of `"k:v"` or a table; in the environment: comma-separated',
        aliases=["--label"],
        metavar="KEY:VALUE",
        example=["env:prod", "role:web"],
    )
    subject_prefix: str = setting(
        DEFAULT_PREFIX, help="first token of every subject; must be the controllers' prefix"
    )
    max_concurrent_jobs: int = setting(
        16, ge=1, le=1024, help="jobs run at once; more wait for a slot"
    )
    output_cap_bytes: int = setting(
        256 * 1024,
        ge=1024,
        help="bytes kept per stream (stdout, stderr), head and tail",
        details="Replies that would still exceed the server's max payload are cut further",
    )
    kill_grace_s: float = setting(
        2.0,
        gt=0,
        le=60,
        help="SIGTERM → SIGKILL on timeout or cancel",
        aliases=["--kill-grace"],
    )
    heartbeat_interval_s: float = setting(
        5.0,
        gt=MIN_HEARTBEAT_INTERVAL_S,
        le=MAX_HEARTBEAT_INTERVAL_S,
        help="how often the registry entry is renewed; it expires after 3 intervals",
        aliases=["--heartbeat-interval"],
    )
    running_report_interval_s: float = setting(
        2.0,
        gt=0,
        le=60,
        help="while the agent holds any job, one report of them all this often",
        details="Jobs queued, running, or whose result JetStream has not taken yet; an idle "
        "agent sends none. Controllers give up on a host that falls silent mid-job",
        aliases=["--running-report-interval"],
    )
    drain_timeout_s: float = setting(
        10.0,
        ge=0,
        help="on SIGTERM, how long running jobs may finish",
        aliases=["--drain-timeout"],
    )
    allow_shell: bool = setting(False, help="run shell jobs (`/bin/sh -c`)")
    allowed_commands: list[str] = setting(
        default_factory=list,
        help="executables allowed (absolute paths, or names on the base `PATH`); empty "
        "allows all; repeat the flag for each",
        details="Compared by real path. With a list, a job's command must be a name or an "
        "absolute path (`./x` and `bin/x` are refused), and the agent runs the very file it "
        "checked. In the environment: comma-separated. Shell jobs are not checked against "
        "this list, so keep `allow_shell` off when you use it",
        aliases=["--allow-command"],
        metavar="COMMAND",
    )
    base_env: dict[str, str] = setting(
        default_factory=lambda: dict(DEFAULT_BASE_ENV),
        help="the whole environment of every job; repeat the flag for each variable",
        details="Nothing from the agent's own environment is passed on. In the file: a "
        "table. Not from the environment (`NEXEC_BASE_ENV` is refused: values may hold "
        "commas)",
        metavar="NAME=VALUE",
        example=dict(DEFAULT_BASE_ENV),
    )
    allow_request_env: bool = setting(
        True,
        help="add a request's `env` to `base_env`; false refuses such jobs",
        details="Even when true, a request may not set a name that is in `base_env`, "
        "starts with `LD_`, or is one of `PATH`, `IFS`, `ENV`, `BASH_ENV`, `SHELLOPTS`, "
        "`PS4`, `PYTHONPATH`",
    )
    run_as_user: str | None = setting(
        None,
        help="user (name or id) to run jobs as",
        details="The agent must run as root, or it does not start",
        example="nexec-run",
    )
    run_as_group: str | None = setting(
        None,
        help="group (name or id) to run jobs as",
        details="The agent must run as root, or it does not start",
        example="nexec-run",
    )
    record_timeout_s: float = setting(
        2.0,
        gt=0,
        le=60,
        help="limit for one try at recording a result in JetStream",
        details="The reply (`reply` route) is sent anyway",
    )
    result_retry_s: float = setting(
        3600.0,
        gt=0,
        le=7 * 24 * 3600,
        help="how long a result JetStream did not take is written again, with backoff",
        details="Backoff 0.5 s doubling to 10 s; then it is given up and counted in "
        "`records_lost`. Each write carries `Nats-Msg-Id` (job id and hostname), so a write "
        "that landed but whose acknowledgement was lost is a duplicate, never recorded "
        "twice nor counted lost",
    )
    trusted_signers: list[str] = setting(
        default_factory=list,
        help="public nkeys (`U...`) whose job signatures this agent accepts; repeat the "
        "flag for each",
        details="Those of the controller and direct publishers. When set, every job must "
        "carry a valid signature from one of them; unsigned, forged, altered and replayed "
        "jobs get a `failed` result and nothing runs (docs/security.md). In the "
        "environment: comma-separated",
        aliases=["--trusted-signer"],
        metavar="PUBLIC_NKEY",
    )
    state_dir: Path = setting(
        Path("/var/lib/nexec-agent"),
        help="where the agent notes its running jobs, to kill what a killed agent left running",
        details="`nexec dev`: `agent-state` in its temporary directory. One small file per "
        "running job (job id, hostname, process group, the process's start time, the boot "
        "id), written when its process starts and removed once its result is sent; with "
        'it, an agent started again kills what a killed agent left running (see "What '
        'happens when…"). Made (mode 0700) if missing; the agent does not start without '
        "it. The systemd unit makes it (`StateDirectory=`)",
    )
    max_clock_skew_s: float = setting(
        5.0,
        ge=0,
        le=300,
        help="how far this host's clock may be from the controllers'",
        details="A job that reaches the agent more than this after its `deliver_by` is "
        "refused (its requester reported the host `no_reply`); with `trusted_signers`, a "
        "job created more than this long before the agent started is refused as a replay. "
        "Keep clocks in NTP sync and this small: a host frozen or cut off for less than "
        "the delivery timeout plus this may still run a job its requester gave up on",
    )

    @pydantic.field_validator("hostname")
    @classmethod
    def _check_hostname(cls, value: str) -> str:
        return validate_hostname(value)

    @pydantic.field_validator("labels", mode="before")
    @classmethod
    def _parse_labels(cls, value: Any) -> Any:
        """Accept a mapping, a list of ``key:value`` or one comma-separated string."""
        if isinstance(value, str):
            value = [item for item in value.split(",") if item]
        if isinstance(value, list):
            return dict(parse_label(str(item)) for item in value)
        if isinstance(value, dict):
            return dict(parse_label(f"{key}:{item}") for key, item in value.items())
        return value

    @pydantic.field_validator("allowed_commands", "trusted_signers", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """Accept one comma-separated string (as from an environment variable)."""
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @pydantic.field_validator("base_env", mode="before")
    @classmethod
    def _parse_env(cls, value: Any) -> Any:
        """Accept a list of ``NAME=VALUE`` (as from flags); refuse a string (as from
        NEXEC_BASE_ENV): it cannot be split safely, since values may hold commas."""
        if isinstance(value, str):
            raise ValueError("set base_env as a table in the config file, not as text")
        if isinstance(value, list):
            pairs = [str(item).partition("=") for item in value]
            if any(not name or not sep for name, sep, _ in pairs):
                raise ValueError("expected NAME=VALUE")
            return {name: item for name, _, item in pairs}
        return value

    @pydantic.field_validator("trusted_signers")
    @classmethod
    def _check_signers(cls, value: list[str]) -> list[str]:
        for key in value:
            decode_public_key(key)
        return value

    def log_context(self) -> dict[str, str]:
        """Every JSON log line of the agent carries its ``hostname``."""
        return {"hostname": self.hostname}
