"""The agent's settings: one typed object, parsed once in ``main``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any

import pydantic

from schemas import DEFAULT_PREFIX, parse_label
from schemas.registry_entry import (
    MAX_AGENT_LABELS,
    MAX_HEARTBEAT_INTERVAL_S,
    MIN_HEARTBEAT_INTERVAL_S,
)
from schemas.settings import NatsClientSettings
from schemas.signing import decode_public_key
from schemas.subjects import Subjects
from schemas.targets import validate_hostname

DEFAULT_BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


class AgentConfig(NatsClientSettings):
    """Settings of ``nexec-agentd``; each is also ``NEXEC_<NAME>`` and a config-file key."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    nats_url: str = "nats://127.0.0.1:4222"
    hostname: str = pydantic.Field(default_factory=socket.gethostname)
    labels: dict[str, str] = pydantic.Field(default_factory=dict, max_length=MAX_AGENT_LABELS)
    subject_prefix: str = DEFAULT_PREFIX
    max_concurrent_jobs: Annotated[int, pydantic.Field(ge=1, le=1024)] = 16
    output_cap_bytes: Annotated[int, pydantic.Field(ge=1024)] = 256 * 1024
    """Bytes kept per stream (stdout, stderr); replies that would still exceed
    the server's max payload are cut further."""
    kill_grace_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 2.0
    heartbeat_interval_s: Annotated[
        float, pydantic.Field(gt=MIN_HEARTBEAT_INTERVAL_S, le=MAX_HEARTBEAT_INTERVAL_S)
    ] = 5.0
    drain_timeout_s: Annotated[float, pydantic.Field(ge=0)] = 10.0
    running_report_interval_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 2.0
    """While the agent holds any job (queued, running, or its result not yet taken by
    JetStream): one report of them all this often (controllers give up on a host that
    falls silent mid-job). An idle agent sends none."""
    connect_timeout_s: Annotated[float, pydantic.Field(gt=0)] = 5.0
    allow_shell: bool = False
    """Run shell jobs (``/bin/sh -c``); on in ``nexec dev``."""
    allowed_commands: list[str] = pydantic.Field(default_factory=list)
    """Executables allowed (absolute paths, or names resolved on the base PATH);
    empty allows all. Shell jobs are not checked against it: keep allow_shell off."""
    base_env: dict[str, str] = pydantic.Field(default_factory=lambda: dict(DEFAULT_BASE_ENV))
    """The whole environment of every job; nothing of the agent's own leaks in."""
    allow_request_env: bool = True
    """Add a request's ``env`` to the base environment (else refuse such jobs)."""
    run_as_user: str | None = None
    """User (name or id) to run jobs as; needs the agent to run as root."""
    run_as_group: str | None = None
    record_timeout_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 2.0
    result_retry_s: Annotated[float, pydantic.Field(gt=0, le=7 * 24 * 3600)] = 3600.0
    """How long a result JetStream did not take is written again (with backoff) before
    it is given up and counted in ``records_lost``."""
    """How long recording a result in JetStream may take before the agent gives up
    on the record (the reply is still sent)."""
    trusted_signers: list[str] = pydantic.Field(default_factory=list)
    """Public nkeys (``U...``) whose job signatures this agent accepts. When any is
    set, every job must be signed by one of them: unsigned, forged, altered and
    replayed jobs are refused with a ``failed`` result and nothing runs."""
    state_dir: Path = Path("/var/lib/nexec-agent")
    """Where the agent notes the processes of its running jobs, to kill those a killed
    agent left behind when it starts again (:mod:`agentd.orphans`)."""
    max_clock_skew_s: Annotated[float, pydantic.Field(ge=0, le=300)] = 5.0
    """With signatures on, a job created more than this long before the agent
    started is refused as a replay (it cannot have been sent to this agent)."""

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
    def _refuse_text_env(cls, value: Any) -> Any:
        """A string (as from NEXEC_BASE_ENV) cannot be split safely: values may hold commas."""
        if isinstance(value, str):
            raise ValueError("set base_env as a table in the config file, not as text")
        return value

    @pydantic.field_validator("trusted_signers")
    @classmethod
    def _check_signers(cls, value: list[str]) -> list[str]:
        for key in value:
            decode_public_key(key)
        return value

    @pydantic.field_validator("subject_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        Subjects(value)
        return value

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_prefix)
