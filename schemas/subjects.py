"""Every NATS subject nexec uses, built by small named functions.

Nothing outside this module builds a subject string. Each variable part
(a hostname, a label key or value) becomes one subject token through
:func:`encode_token`, so a dot in an FQDN never splits a token and two
different names never share a subject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.targets import Target, TargetKind

DEFAULT_PREFIX = "nexec"
ANY_QUEUE_GROUP = "nexec-agents"

SERVICE_PREFIX = "$SRV"
"""The root of the NATS service API's discovery subjects (ADR-32): NATS's, not ours."""
SERVICE_VERBS = ("PING", "INFO", "STATS")
AGENT_SERVICE = "nexec-agent"
"""The ADR-32 service name of every agent (one instance per agent process)."""
CONTROLLER_SERVICE = "nexec-controller"
"""The ADR-32 service name of every controller (one instance per controller process)."""

_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_SAFE_RE = re.compile(r"[A-Za-z0-9-]+")
"""A name made of :data:`_SAFE_CHARS` only: its own token (checked on every ack and
result, so a regular expression rather than a loop over its characters)."""
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def encode_token(name: str) -> str:
    """Turn any non-empty string into one subject token made of ``A-Za-z0-9-_``.

    Letters, digits and ``-`` stay as they are; every other byte of the UTF-8
    encoding, ``_`` included, becomes ``_XX`` (two upper-case hex digits). The
    mapping is injective: ``web1.example.com`` is ``web1_2Eexample_2Ecom`` and
    cannot collide with ``web1_example_com`` (``web1_5Fexample_5Fcom``).

    Raises:
        ValueError: ``name`` is empty.
    """
    if not name:
        raise ValueError("a subject token cannot be empty")
    if _SAFE_RE.fullmatch(name):
        return name
    parts: list[str] = []
    for char in name:
        if char in _SAFE_CHARS:
            parts.append(char)
        else:
            parts.extend(f"_{byte:02X}" for byte in char.encode())
    return "".join(parts)


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`.

    Raises:
        ValueError: ``token`` is not a valid encoding.
    """
    if "_" not in token:  # no escape: every character stands for itself
        return token
    out = bytearray()
    index = 0
    while index < len(token):
        char = token[index]
        if char == "_":
            hex_digits = token[index + 1 : index + 3]
            if len(hex_digits) != 2:
                raise ValueError(f"truncated escape in subject token {token!r}")
            out.append(int(hex_digits, 16))
            index += 3
        else:
            out.extend(char.encode())
            index += 1
    return out.decode()


@dataclass(frozen=True, slots=True)
class Subjects:
    """The subject tree under one prefix (default ``nexec``).

    Raises:
        ValueError: at construction, when ``prefix`` is not dot-separated
            tokens of ``A-Za-z0-9-_``.
    """

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ValueError(f"invalid subject prefix {self.prefix!r}")

    def exec_host(self, hostname: str) -> str:
        """Jobs for exactly one agent."""
        return f"{self.prefix}.exec.host.{encode_token(hostname)}"

    def exec_label(self, key: str, value: str) -> str:
        """Jobs for every agent carrying the label ``key:value``."""
        return f"{self.prefix}.exec.label.{encode_token(key)}.{encode_token(value)}"

    def exec_all(self) -> str:
        """Jobs for every agent."""
        return f"{self.prefix}.exec.all"

    def exec_any(self) -> str:
        """Jobs for exactly one agent, chosen by the queue group :data:`ANY_QUEUE_GROUP`."""
        return f"{self.prefix}.exec.any"

    def exec_every(self) -> str:
        """Every job subject (a direct publisher's NATS permission)."""
        return f"{self.prefix}.exec.>"

    def exec_target(self, target: Target) -> str:
        """The one subject a job for ``target`` is published on.

        A multi-label selector goes to the subject of its first label (by key);
        agents that carry that label but not the others drop the job.
        """
        if target.kind is TargetKind.HOST:
            return self.exec_host(target.hostname)
        if target.kind is TargetKind.LABELS:
            key, value = target.labels[0]
            return self.exec_label(key, value)
        if target.kind is TargetKind.ANY:
            return self.exec_any()
        return self.exec_all()

    def ack(self, job_id: str, hostname: str) -> str:
        """Where an agent acknowledges a job sent with the ``record`` reply route."""
        return f"{self.prefix}.ack.{encode_token(job_id)}.{encode_token(hostname)}"

    def acks_all(self) -> str:
        return f"{self.prefix}.ack.*.*"

    def acks_of_host(self, hostname: str) -> str:
        """Every ack subject of one host (its NATS permission)."""
        return f"{self.prefix}.ack.*.{encode_token(hostname)}"

    def parse_ack(self, subject: str) -> tuple[str, str]:
        """The job id and the hostname an ack subject carries.

        Raises:
            ValueError: ``subject`` is not an ack subject.
        """
        return self._job_and_host(subject, ("ack",))

    def is_nexec_subject(self, subject: str) -> bool:
        """True for a subject under this prefix or a NATS system, JetStream or KV
        subject (``$...``): never a reply subject an agent may answer on."""
        return subject.startswith(("$", f"{self.prefix}."))

    def cancel(self) -> str:
        """Cancel requests, broadcast to every agent."""
        return f"{self.prefix}.cancel"

    def running(self, hostname: str) -> str:
        """Where an agent reports the jobs it is running (its NATS permission too)."""
        return f"{self.prefix}.running.{encode_token(hostname)}"

    def running_all(self) -> str:
        return f"{self.prefix}.running.*"

    def parse_running(self, subject: str) -> str:
        """The hostname a running-report subject carries: the report's only identity.

        Raises:
            ValueError: ``subject`` is not a running-report subject, or its token is
                not the one encoding of the name it decodes to.
        """
        stem, _, host_token = subject.rpartition(".")
        if stem != f"{self.prefix}.running" or not host_token:
            raise ValueError(f"not a running-report subject: {subject!r}")
        hostname = decode_token(host_token)
        if encode_token(hostname) != host_token:
            raise ValueError(f"not the one encoding of its name: {subject!r}")
        return hostname

    @property
    def _stem(self) -> str:
        """The prefix as one name token, for JetStream stream and bucket names."""
        return self.prefix.replace(".", "_")

    def registry_bucket(self) -> str:
        """KV bucket of live agents: key :meth:`registry_key`, value a Heartbeat."""
        return f"{self._stem}_agents"

    def registry_key(self, hostname: str) -> str:
        return encode_token(hostname)

    def registry_entry(self, hostname: str) -> str:
        """The subject a heartbeat is published on to set the agent's registry entry (an
        empty message with a ``KV-Operation: DEL`` header deletes it)."""
        return f"$KV.{self.registry_bucket()}.{self.registry_key(hostname)}"

    def registry_entries_all(self) -> str:
        """Every key of the registry bucket: the subjects of its stream."""
        return f"$KV.{self.registry_bucket()}.>"

    def jobs_stream(self) -> str:
        """Stream of job records, one message per job on :meth:`job_record`."""
        return f"{self._stem}_jobs"

    def job_record(self, job_id: str) -> str:
        return f"{self.prefix}.record.job.{encode_token(job_id)}"

    def job_records_all(self) -> str:
        return f"{self.prefix}.record.job.*"

    def results_stream(self) -> str:
        """Stream of per-host results, one message per host on :meth:`result_record`."""
        return f"{self._stem}_results"

    def result_record(self, job_id: str, hostname: str) -> str:
        """Where an agent records its result of a job (besides replying)."""
        return f"{self.prefix}.record.result.{encode_token(job_id)}.{encode_token(hostname)}"

    def result_records(self, job_id: str) -> str:
        """Wildcard matching every host's result of one job."""
        return f"{self.prefix}.record.result.{encode_token(job_id)}.*"

    def result_records_all(self) -> str:
        return f"{self.prefix}.record.result.*.*"

    def result_records_of_host(self, hostname: str) -> str:
        """Every result record subject of one host (its NATS permission)."""
        return f"{self.prefix}.record.result.*.{encode_token(hostname)}"

    def output_record(self, job_id: str, hostname: str) -> str:
        """Where an agent records live output chunks of a job (several per host)."""
        return f"{self.prefix}.record.output.{encode_token(job_id)}.{encode_token(hostname)}"

    def parse_host_record(self, subject: str) -> tuple[str, str]:
        """The job id and the hostname that a result or output record subject carries:
        the only source of a record's identity (never its payload).

        Raises:
            ValueError: ``subject`` is not a result or output record subject.
        """
        return self._job_and_host(subject, ("record.result", "record.output"))

    def _job_and_host(self, subject: str, kinds: tuple[str, ...]) -> tuple[str, str]:
        """Raises: ValueError: ``subject`` is not ``<prefix>.<kind>.<job>.<host>`` with
        both names in their one encoding (``_61bc`` is not ``abc``: a reader that looks
        for ``abc``'s records would never find it)."""
        head, _, host_token = subject.rpartition(".")
        stem, _, job_token = head.rpartition(".")
        if (
            stem not in (f"{self.prefix}.{kind}" for kind in kinds)
            or not job_token
            or not host_token
        ):
            raise ValueError(f"not a per-host subject of a job: {subject!r}")
        job_id, hostname = decode_token(job_token), decode_token(host_token)
        if encode_token(job_id) != job_token or encode_token(hostname) != host_token:
            raise ValueError(f"not the one encoding of its names: {subject!r}")
        return job_id, hostname

    def output_records(self, job_id: str) -> str:
        return f"{self.prefix}.record.output.{encode_token(job_id)}.*"

    def is_output_record(self, subject: str) -> bool:
        return subject.startswith(f"{self.prefix}.record.output.")

    def output_records_all(self) -> str:
        return f"{self.prefix}.record.output.*.*"

    def output_records_of_host(self, hostname: str) -> str:
        """Every output record subject of one host (its NATS permission)."""
        return f"{self.prefix}.record.output.*.{encode_token(hostname)}"

    @staticmethod
    def agent_inbox_prefix(hostname: str) -> str:
        """The agent's reply subjects start with this instead of ``_INBOX`` (its NATS
        permission lets it read only its own)."""
        return f"_INBOX_{encode_token(hostname)}"

    @staticmethod
    def publisher_inbox_prefix() -> str:
        """The direct publishers' reply subjects start with this."""
        return "_INBOX_publisher"

    @staticmethod
    def inbox_all(inbox_prefix: str) -> str:
        """Every reply subject under ``inbox_prefix`` (a NATS permission)."""
        return f"{inbox_prefix}.>"

    @staticmethod
    def job_reply(inbox: str, job_id: str) -> str:
        """The reply subject of one job a controller publishes, under its ``inbox``
        (``nc.new_inbox()``): where NATS's "no responders" status comes back."""
        return f"{inbox}.{encode_token(job_id)}"

    @staticmethod
    def job_replies_all(inbox: str) -> str:
        """Every :meth:`job_reply` subject under ``inbox``."""
        return f"{inbox}.*"

    @staticmethod
    def parse_job_reply(subject: str) -> str:
        """The job id of a :meth:`job_reply` subject.

        Raises:
            ValueError: its last token is not a valid encoding.
        """
        return decode_token(subject.rsplit(".", 1)[-1])

    @staticmethod
    def service_request(verb: str, name: str = "", instance_id: str = "") -> str:
        """An ADR-32 discovery subject: ``$SRV.<verb>``, ``$SRV.<verb>.<name>`` or
        ``$SRV.<verb>.<name>.<id>`` (names and ids are subject-safe already)."""
        tokens = [SERVICE_PREFIX, verb, *(t for t in (name, instance_id) if t)]
        return ".".join(tokens)

    @staticmethod
    def service_requests_of(name: str, instance_id: str) -> list[tuple[str, str]]:
        """Every subject one service instance answers, with its verb: for each verb,
        all services, the service ``name``, and this instance."""
        return [
            (verb, Subjects.service_request(verb, *parts))
            for verb in SERVICE_VERBS
            for parts in ((), (name,), (name, instance_id))
        ]

    @staticmethod
    def service_requests_allowed(name: str) -> list[str]:
        """The discovery subjects a user answering as the service ``name`` may read
        (its NATS permission: any instance id, since ids are made at start)."""
        return [
            Subjects.service_request(verb, *parts)
            for verb in SERVICE_VERBS
            for parts in ((), (name,), (name, "*"))
        ]

    @staticmethod
    def service_requests_any() -> list[str]:
        """Every discovery request a user asking services may publish (its NATS
        permission): all, one service, one instance."""
        return [
            Subjects.service_request(verb, *parts)
            for verb in SERVICE_VERBS
            for parts in ((), ("*",), ("*", "*"))
        ]

    def audit_stream(self) -> str:
        """Stream of audit records, one message per audited request."""
        return f"{self._stem}_audit"

    def audit_record(self) -> str:
        return f"{self.prefix}.audit"

    def stream_of(self, subject: str) -> str:
        """The name of the stream of ours that stores what is written on ``subject`` (a
        job record, result, output or audit subject); ``other`` for any other subject."""
        if subject.startswith(f"{self.prefix}.record.job."):
            return self.jobs_stream()
        if subject.startswith((f"{self.prefix}.record.result.", f"{self.prefix}.record.output.")):
            return self.results_stream()
        if subject == self.audit_record():
            return self.audit_stream()
        return "other"

    def idempotency_bucket(self) -> str:
        """KV bucket mapping (key name, Idempotency-Key) to the job it started."""
        return f"{self._stem}_idempotency"

    def rollouts_bucket(self) -> str:
        """KV bucket of running rollouts' progress: key :meth:`rollout_key`, value a
        RolloutState."""
        return f"{self._stem}_rollouts"

    @staticmethod
    def rollout_key(job_id: str) -> str:
        """The rollouts bucket's key of one rollout (a job id is a UUID: a safe key)."""
        return job_id

    def rollout_entry(self, job_id: str) -> str:
        """The subject a rollout's entry is written on (its key in the rollouts bucket's
        stream), for writes that skip the KV client's request machinery."""
        return f"$KV.{self.rollouts_bucket()}.{self.rollout_key(job_id)}"

    def fleet_bucket(self) -> str:
        """KV bucket of the fleet's state: the pause entry (:meth:`fleet_pause_key`)."""
        return f"{self._stem}_fleet"

    @staticmethod
    def fleet_pause_key() -> str:
        """The fleet bucket's key of the pause entry (a FleetPauseRecord)."""
        return "pause"

    def host_slots_bucket(self) -> str:
        """KV bucket of the hosts each ``max_hosts`` key has running: key
        :meth:`host_slots_key`, value a HostSlots."""
        return f"{self._stem}_host_slots"

    @staticmethod
    def host_slots_key(key_name: str) -> str:
        """The host-slots bucket's key of one API key (its name, made subject-safe)."""
        return encode_token(key_name)
