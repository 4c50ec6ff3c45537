"""The controller's settings: one typed object, parsed once in ``main``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pydantic

from controller.validation import whole_number
from schemas import DEFAULT_PREFIX, Subjects
from schemas.settings import NatsClientSettings

MIB = 1024 * 1024
GIB = 1024 * MIB


class ControllerConfig(NatsClientSettings):
    """Settings of ``nexec-controller``; each is also ``NEXEC_<NAME>`` and a config-file key."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    nats_url: str = "nats://127.0.0.1:4222"
    listen: str = "127.0.0.1:8080"
    """``HOST:PORT`` of the HTTP server; port 0 picks a free one."""
    keys_file: Path = Path("keys.json")
    keys_reload_interval_s: Annotated[float, pydantic.Field(gt=0, le=3600)] = 2.0
    """How often the keys file is checked for a change (one ``stat``); SIGHUP reloads at once."""
    subject_prefix: str = DEFAULT_PREFIX
    delivery_margin_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 3.0
    """Added to a request's timeout: how long replies may take to arrive."""
    max_body_bytes: Annotated[int, pydantic.Field(ge=1024)] = 64 * 1024
    delivery_timeout_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 2.0
    """How long a host has to acknowledge a job before it is reported no_reply."""
    job_retention_s: Annotated[float, pydantic.Field(ge=60)] = 24 * 3600.0
    """How long job records, results and idempotency keys are kept."""
    audit_retention_s: Annotated[float, pydantic.Field(ge=60)] = 90 * 24 * 3600.0
    """How long audit records are kept (default 90 days)."""
    jobs_max_bytes: Annotated[int, pydantic.Field(ge=1024)] = 512 * MIB
    """Most bytes the job-record stream holds; when full, new jobs get 503 storage full."""
    results_max_bytes: Annotated[int, pydantic.Field(ge=1024)] = 2 * GIB
    """Most bytes the results stream (results and live output) holds; when full, agents'
    results are refused (logged by the agent, reported by ``/healthz``)."""
    audit_max_bytes: Annotated[int, pydantic.Field(ge=1024)] = 2 * GIB
    """Most bytes the audit stream holds; when full, audit records are refused (and logged)."""
    idempotency_max_bytes: Annotated[int, pydantic.Field(ge=1024)] = 128 * MIB
    """Most bytes the idempotency-key bucket holds; when full, keyed requests get 503."""
    registry_max_bytes: Annotated[int, pydantic.Field(ge=1024)] = 64 * MIB
    """Most bytes the registry bucket holds; when full, new agents cannot register."""
    health_probe_interval_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 2.0
    """How often ``/healthz`` checks that JetStream answers (one stream-info request)."""
    health_probe_timeout_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 3.0
    """How long that check may take before ``/healthz`` says JetStream is not answering."""
    registry_check_interval_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 1.0
    """How often the registry watch is checked (two stream/consumer-info requests);
    agents never expire past the last good check, and a failed one restarts the watch
    (it may take ``health_probe_timeout_s``)."""
    jetstream_replicas: Annotated[int, pydantic.Field(ge=1, le=5)] = 1
    jetstream_timeout_s: Annotated[float, pydantic.Field(gt=0, le=60)] = 5.0
    connect_timeout_s: Annotated[float, pydantic.Field(gt=0)] = 5.0
    rate_limit_per_s: Annotated[float, pydantic.Field(ge=0)] = 50.0
    """Requests per second each key may make on this controller; 0 disables."""
    rate_limit_burst: Annotated[int, pydantic.Field(ge=1)] = 100
    job_signing_key_file: Path | None = None
    """An nkey seed file (``nexec signing-key create``): sign every job with it, for
    agents that trust its public key (``trusted_signers``)."""
    http_read_timeout_s: Annotated[float, pydantic.Field(gt=0, le=3600)] = 30.0
    """Time a client has to send a request's headers (from connecting, or from the end
    of its previous answer) and, separately, its body; a connection idle this long is
    closed too."""
    http_max_connections: Annotated[int, pydantic.Field(ge=1)] = 1000
    """Connections served at once; requests on connections beyond it get 503 (but
    ``/healthz``), and those connections are closed."""
    state_check_interval_s: Annotated[float, pydantic.Field(gt=0, le=3600)] = 2.0
    """How often every stream and bucket is checked, and one that is missing made again."""
    access_log: bool = False
    """One INFO line per HTTP request. Off by default: it costs about a fifth of
    the controller's CPU per request (docs/performance.md)."""

    @pydantic.field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        port_number = whole_number(port)
        if not sep or not host or port_number is None or port_number > 65535:
            raise ValueError("expected HOST:PORT")
        return value

    @pydantic.field_validator("subject_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        Subjects(value)
        return value

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_prefix)
