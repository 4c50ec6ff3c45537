"""The controller's settings: one typed object, parsed once in ``main``."""

from __future__ import annotations

from pathlib import Path

import pydantic

from controller.http.validation import whole_number
from runtime.daemon import DaemonSettings
from runtime.settings import setting
from schemas.limits import MAX_DELIVERY_MARGIN_S, MAX_ROLLOUT_ANSWER_S
from schemas.subjects import DEFAULT_PREFIX

MIB = 1024 * 1024
GIB = 1024 * MIB


class ControllerConfig(DaemonSettings):
    """Settings of ``nexec-controller``: each field, declared with :func:`setting`, is also
    ``--<name>``, ``NEXEC_<NAME>``, a config-file key and a row of docs/operations.md."""

    listen: str = setting(
        "127.0.0.1:8080",
        help="`HOST:PORT` of the HTTP server; port 0 picks a free one (the ready line logs it)",
        metavar="HOST:PORT",
    )
    keys_file: Path = setting(
        Path("keys.json"),
        help="the API keys file (`nexec keys create`)",
        details="Read at start (invalid: exit 2), then reloaded on SIGHUP and when it "
        'changes (see "API keys")',
        example="/etc/nexec/keys.json",
        metavar="FILE",
    )
    keys_reload_interval_s: float = setting(
        2.0,
        gt=0,
        le=3600,
        help="how often the keys file is checked for a change; SIGHUP reloads it at once",
        details="One `stat` (inode, size, times); the file is read only when they differ",
        aliases=["--keys-reload-interval"],
    )
    subject_prefix: str = setting(
        DEFAULT_PREFIX, help="first token of every subject; must be the agents' prefix"
    )
    delivery_margin_s: float = setting(
        3.0,
        gt=0,
        le=MAX_DELIVERY_MARGIN_S,
        help="added to each request's timeout to make the job's deadline",
        aliases=["--delivery-margin"],
    )
    max_body_bytes: int = setting(65536, ge=1024, help="larger request bodies get `413`")
    delivery_timeout_s: float = setting(
        2.0,
        gt=0,
        le=60,
        help="a host must acknowledge a job within this, or it is `no_reply`",
        aliases=["--delivery-timeout"],
    )
    agent_lost_after_s: float = setting(
        6.0,
        gt=0,
        le=3600,
        help="a host not heard of this long mid-job is `no_reply`, agent lost while running",
        details="Heard of: its ack, then each running report listing the job. Decided "
        "before the deadline only while this controller's NATS connection was healthy all "
        "that time and other agents (or that host's own heartbeats) show that NATS delivers "
        "(docs/jobs.md). Keep it above three of the agents' `running_report_interval_s`, "
        "and above their `heartbeat_interval_s`",
        aliases=["--agent-lost-after"],
    )
    running_reports_pending_msgs: int = setting(
        65536,
        ge=1,
        help="most running reports held unread; more are dropped (slow consumer)",
        details="While more than half as many are held unread, or any was dropped since "
        "the last check, no host is given up as lost: a host flooding its running subject "
        "cannot make another's reports late (docs/security.md). Keep it well above the "
        "fleet's size",
    )
    running_reports_pending_bytes: int = setting(
        64 * MIB,
        ge=1024,
        help="most bytes of running reports held unread; more are dropped (slow consumer)",
        details="As `running_reports_pending_msgs`, in bytes: the memory a flood can take",
    )
    registry_check_interval_s: float = setting(
        1.0,
        gt=0,
        le=60,
        help="how often the registry watch is checked (two stream/consumer-info requests)",
        details="Agents expire only up to the last good check, and a failed check restarts "
        'the watch, within `health_probe_timeout_s` ("Registry")',
    )
    results_heartbeat_s: float = setting(
        1.0,
        gt=0,
        le=60,
        help="idle heartbeat of the consumer the agents' results are read from",
        details="nats-py checks it every two heartbeats: after a check with none (a NATS "
        "server restarted, its consumers gone), 2 to 4 heartbeats after the last, the "
        "consumer is made again: results that came meanwhile are read then",
    )
    job_retention_s: float = setting(
        24 * 3600.0,
        ge=1,
        help="how long job records, results and idempotency keys are kept",
        details='A rollout\'s are kept this long after it ends (docs/jobs.md, "Rollouts")',
        aliases=["--job-retention"],
    )
    audit_retention_s: float = setting(
        90 * 24 * 3600.0, ge=60, help="how long audit records are kept (90 days)"
    )
    jobs_max_bytes: int = setting(
        512 * MIB,
        ge=1024,
        help="most bytes of the job-record stream; when full, exec and shell get "
        "`503 storage full`",
        details='About 450 B per job (see "Storage: bounds and sizing")',
    )
    results_max_bytes: int = setting(
        2 * GIB,
        ge=1024,
        help="most bytes of the results stream (results and live output)",
        details="When full, agents' results are refused (logged by the agent, reported "
        "by `/healthz`). About 800 B per host and job, plus output",
    )
    audit_max_bytes: int = setting(
        2 * GIB,
        ge=1024,
        help="most bytes of the audit stream; when full, audit records are refused",
        details="A refused record is logged whole at ERROR. About 350 B per record",
    )
    idempotency_max_bytes: int = setting(
        128 * MIB,
        ge=1024,
        help="most bytes of the idempotency-key bucket; when full, requests with "
        "`Idempotency-Key` get `503 storage full`",
        details="About 340 B per key",
    )
    registry_max_bytes: int = setting(
        64 * MIB,
        ge=1024,
        help="most bytes of the registry bucket; when full, new agents cannot register",
        details="About 400 B per host",
    )
    fleet_max_bytes: int = setting(
        1 * MIB,
        ge=1024,
        help="most bytes of the fleet-state bucket (the pause entry)",
        details="One entry of about 100 B",
    )
    rollout_lease_s: float = setting(
        6.0,
        ge=0.5,
        le=600,
        help="how long a controller holds a rollout it drives without renewing it; "
        "another controller takes over a rollout whose lease has passed",
        details="Renewed every third of it; checked for by every controller every half of it",
    )
    rollout_answer_s: float = setting(
        float(MAX_ROLLOUT_ANSWER_S),
        gt=0,
        le=MAX_ROLLOUT_ANSWER_S,
        help="the longest a rollout's HTTP answer waits; then it comes with what is known "
        "(`complete: false`) and the rollout goes on",
        details="`?wait` answers earlier, never later",
    )
    rollouts_max_bytes: int = setting(
        64 * MIB,
        ge=1024,
        help="most bytes of the rollouts bucket (each rollout's progress); when full, "
        "rollouts get `503 storage full`",
        details="About 60 B per rollout plus 50 B per host",
    )
    host_slots_max_bytes: int = setting(
        16 * MIB,
        ge=1024,
        help="most bytes of the host-slots bucket (the hosts each `max_hosts` key has "
        "running); when full, such keys' requests get `503 storage full`",
        details="About 100 B per host running for a key with `max_hosts`",
    )
    max_hosts_wait_s: float = setting(
        600.0,
        ge=0,
        le=86400,
        help="how long, at most, a rollout of a key with `max_hosts` may wait in all for "
        "host slots its key's other requests hold",
        details="Added to such a rollout's worst case (its deadline, and the check "
        "against `job_retention_s`); a rollout that runs out of it stops, the rest skipped",
    )
    host_slots_retry_s: float = setting(
        0.5,
        gt=0,
        le=60,
        help="how often a rollout waiting for one of its key's `max_hosts` slots looks again",
        details="A slot given back on this controller is seen at once",
    )
    health_probe_interval_s: float = setting(
        2.0,
        gt=0,
        le=60,
        help="how often `/healthz` checks that JetStream answers",
        details="One stream-info request on the job stream",
    )
    health_probe_timeout_s: float = setting(
        3.0,
        gt=0,
        le=60,
        help="how long that check may take; longer, and `/healthz` answers `503` until "
        "the next check succeeds",
    )
    jetstream_replicas: int = setting(
        1,
        ge=1,
        le=5,
        help="replicas of the streams and buckets it creates; 3 on a 3-node cluster",
    )
    jetstream_timeout_s: float = setting(5.0, gt=0, le=60, help="limit for each JetStream request")
    rate_limit_per_s: float = setting(
        50.0,
        ge=0,
        help="requests per second each key may make on this controller; 0 turns the limit off",
        aliases=["--rate-limit"],
    )
    rate_limit_burst: int = setting(
        100, ge=1, help="requests a key may make at once before the rate applies"
    )
    job_signing_key_file: Path | None = setting(
        None,
        help="an nkey seed file: every job is signed with it",
        details="Made by `nexec signing-key create`, or `controller.nk` from "
        "`nexec nats-auth`. Agents with `trusted_signers` refuse unsigned jobs, so set "
        "this before you turn signing on in the agents",
        example="/etc/nexec/controller.nk",
    )
    http_read_timeout_s: float = setting(
        30.0,
        gt=0,
        le=3600,
        help="time a client has to send a request's headers (from connecting, or from the "
        "end of the previous answer), and then its body",
        details="Stalled headers and idle connections are closed, a stalled body gets `408`",
        aliases=["--http-read-timeout"],
    )
    http_max_connections: int = setting(
        1000,
        ge=1,
        help="connections served at once; requests on connections beyond it get `503` "
        "and the connection is closed, except `/healthz`",
    )
    state_check_interval_s: float = setting(
        2.0,
        gt=0,
        le=3600,
        help="how often every stream and bucket is checked; a missing one is made again",
        details='See "Registry"',
        aliases=["--state-check-interval"],
    )
    access_log: bool = setting(
        False,
        help="one INFO line per HTTP request",
        details="Off by default because it costs about a fifth of the controller's CPU "
        "per request (docs/performance.md)",
    )

    metrics_enabled: bool = setting(
        True,
        help="serve Prometheus metrics at `GET /metrics` (no key needed); false: `404`",
        details='See "Monitoring"; with it off, nothing is recorded for them',
    )
    metrics_listen: str | None = setting(
        None,
        help="`HOST:PORT` of a listener of its own for `GET /metrics` (then `404` on "
        "`listen`); unset: served on `listen`",
        details="Keep metrics off a public interface: a private or loopback address here",
        example="127.0.0.1:9464",
        metavar="HOST:PORT",
    )

    metrics_cache_s: float = setting(
        1.0,
        ge=0,
        le=60,
        help="a scrape within this many seconds of the last exposition gets the same "
        "text; 0: each is made anew",
        details="Bounds what a flood of scrapes (no key needed) costs: one exposition, "
        "milliseconds of CPU, per interval",
    )

    @pydantic.field_validator("listen", "metrics_listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None:
            split_host_port(value)
        return value

    @property
    def listen_host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen)[1]


def split_host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:80`` too) as its host and port.

    Raises:
        ValueError: not ``HOST:PORT`` with a port from 0 to 65535.
    """
    host, sep, port = address.rpartition(":")
    port_number = whole_number(port)
    if not sep or not host or port_number is None or port_number > 65535:
        raise ValueError("expected HOST:PORT")
    return host.strip("[]"), port_number
