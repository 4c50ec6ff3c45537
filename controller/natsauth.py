"""``nexec nats-auth``: NATS users and permissions that follow the subject tree.

Writes, into a directory git ignores:

- ``auth.conf``: an ``authorization`` block for nats-server (included by the
  configs in deploy/nats/): one user for the controllers, one for direct
  publishers, one per agent;
- one ``<name>.env`` per user with its ``NEXEC_NATS_*`` settings (mode 0600).

An agent's user may subscribe only to its own host subject, its labels'
subjects, the all and any subjects, cancel requests and its private inbox; it
may publish only its registry entry, its results and output records, and
answers to the jobs it received. It cannot publish a job or read another
host's subject. The publisher may publish jobs and read its own inbox.
Controllers are trusted with every subject.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from schemas import Subjects, encode_token, parse_label
from schemas.jetstream import registry_entry_subject
from schemas.subjects import ANY_QUEUE_GROUP
from schemas.targets import validate_hostname

# Replies to a job: its ack and its result, within the longest timeout and margin.
AGENT_RESPONSES = {"max": 2, "expires": "6m"}


@dataclass(frozen=True, slots=True)
class AgentSpec:
    hostname: str
    labels: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> AgentSpec:
        """``web1.example.com,role:web,env:prod``.

        Raises:
            TargetSyntaxError: an invalid hostname or label.
        """
        hostname, *labels = text.split(",")
        return cls(validate_hostname(hostname), dict(parse_label(label) for label in labels))


def agent_inbox_prefix(hostname: str) -> str:
    return f"_INBOX_{encode_token(hostname)}"


def agent_permissions(subjects: Subjects, agent: AgentSpec) -> dict[str, object]:
    token = encode_token(agent.hostname)
    listens = [
        subjects.exec_host(agent.hostname),
        *(subjects.exec_label(key, value) for key, value in sorted(agent.labels.items())),
        subjects.exec_all(),
        f"{subjects.exec_any()} {ANY_QUEUE_GROUP}",
        subjects.cancel(),
        f"{agent_inbox_prefix(agent.hostname)}.>",
    ]
    publishes = [
        registry_entry_subject(subjects, agent.hostname),
        f"{subjects.prefix}.record.result.*.{token}",
        f"{subjects.prefix}.record.output.*.{token}",
        f"$JS.API.STREAM.INFO.KV_{subjects.registry_bucket()}",
    ]
    return {
        "publish": {"allow": publishes},
        "subscribe": {"allow": listens},
        "allow_responses": AGENT_RESPONSES,
    }


def publisher_permissions(subjects: Subjects) -> dict[str, object]:
    return {
        "publish": {"allow": [f"{subjects.prefix}.exec.>"]},
        "subscribe": {"allow": ["_INBOX_publisher.>"]},
    }


def write_nats_auth(out_dir: Path, subjects: Subjects, agents: list[AgentSpec]) -> list[Path]:
    """Write ``auth.conf`` and one ``.env`` per user with fresh random passwords.

    Returns the files written.

    Raises:
        OSError: the directory cannot be written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    users: list[dict[str, object]] = []
    written: list[Path] = []

    def add_user(name: str, permissions: dict[str, object] | None, inbox: str | None) -> None:
        password = secrets.token_urlsafe(24)
        user: dict[str, object] = {"user": name, "password": password}
        if permissions is not None:
            user["permissions"] = permissions
        users.append(user)
        settings = {"NEXEC_NATS_USER": name, "NEXEC_NATS_PASSWORD": password}
        if inbox is not None:
            settings["NEXEC_NATS_INBOX_PREFIX"] = inbox
        env = "".join(f"{key}={value}\n" for key, value in settings.items())
        written.append(_write_private(out_dir / f"{name}.env", env))

    add_user("controller", None, None)
    add_user("publisher", publisher_permissions(subjects), "_INBOX_publisher")
    for agent in agents:
        name = f"agent-{encode_token(agent.hostname)}"
        add_user(name, agent_permissions(subjects, agent), agent_inbox_prefix(agent.hostname))
    # nats-server reads JSON as its config syntax.
    conf = "authorization " + json.dumps({"users": users}, indent=2) + "\n"
    written.insert(0, _write_private(out_dir / "auth.conf", conf))
    return written


def _write_private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    return path
