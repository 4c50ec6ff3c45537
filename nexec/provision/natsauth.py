"""``nexec nats-auth``: NATS users, TLS and job signing keys for a deployment.

Writes, into a directory git ignores (everything secret with mode 0600):

- ``auth.conf``: an ``authorization`` block for nats-server (included by the
  configs in deploy/nats/): one user for the controllers, one for direct
  publishers, one per agent, each with a random password;
- ``tls/`` and ``tls.conf``: a private CA, a server certificate, one client
  certificate per user, and the ``tls`` block (mutual TLS) the configs include
  for clients and for cluster routes;
- ``controller.nk`` and ``publisher.nk``: job signing seeds; every agent trusts
  both public keys;
- one ``<name>.env`` per user with its ``NEXEC_*`` settings: NATS user,
  password, inbox prefix, TLS files, and the signing key (controller) or the
  trusted signers (agents).

An agent's user may subscribe only to its own host subject, its labels'
subjects, the all and any subjects, cancel requests and its private inbox; it
may publish only its registry entry, its acks, its running reports, its results
and output records (each subject carrying its own hostname's token), and answers to
the jobs it received. It cannot publish a job, read another host's subject or speak on
another host's subject. It answers discovery requests (``$SRV``, ADR-32) as the service
``nexec-agent`` only, and cannot ask any. The publisher may publish jobs and discovery
requests, read its own inbox, and read the ack and result subjects (to collect
``record``-route answers whose sender NATS vouches for). Controllers are trusted
with every subject.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from nexec.provision.files import write_file
from nexec.provision.tlsgen import TlsSetup, write_tls_setup
from runtime.signing import JobSigner, create_seed
from schemas.limits import MAX_DEADLINE_AHEAD_S
from schemas.subjects import AGENT_SERVICE, ANY_QUEUE_GROUP, Subjects, encode_token
from schemas.targets import parse_label, validate_hostname

# Replies to a job: its ack and its result, within the longest timeout and margin.
AGENT_RESPONSES = {"max": 2, "expires": f"{MAX_DEADLINE_AHEAD_S}s"}


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


def agent_permissions(subjects: Subjects, agent: AgentSpec) -> dict[str, object]:
    listens = [
        subjects.exec_host(agent.hostname),
        *(subjects.exec_label(key, value) for key, value in sorted(agent.labels.items())),
        subjects.exec_all(),
        f"{subjects.exec_any()} {ANY_QUEUE_GROUP}",
        subjects.cancel(),
        subjects.inbox_all(subjects.agent_inbox_prefix(agent.hostname)),
        # Discovery (ADR-32) as nexec-agent only; answered through allow_responses.
        *subjects.service_requests_allowed(AGENT_SERVICE),
    ]
    publishes = [
        subjects.registry_entry(agent.hostname),
        subjects.acks_of_host(agent.hostname),
        subjects.running(agent.hostname),
        subjects.result_records_of_host(agent.hostname),
        subjects.output_records_of_host(agent.hostname),
    ]
    return {
        "publish": {"allow": publishes},
        "subscribe": {"allow": listens},
        "allow_responses": AGENT_RESPONSES,
    }


def publisher_permissions(subjects: Subjects) -> dict[str, object]:
    return {
        "publish": {"allow": [subjects.exec_every(), *subjects.service_requests_any()]},
        "subscribe": {
            "allow": [
                subjects.inbox_all(subjects.publisher_inbox_prefix()),
                subjects.acks_all(),
                subjects.result_records_all(),
            ]
        },
    }


def write_nats_auth(
    out_dir: Path,
    subjects: Subjects,
    agents: list[AgentSpec],
    tls_hosts: list[str],
    *,
    replace: bool = False,
) -> list[Path]:
    """Write the users (``auth.conf``), the TLS setup (``tls/`` and ``tls.conf``),
    the job signing keys (``controller.nk``, ``publisher.nk``) and one ``.env`` per
    user, all new. ``tls_hosts`` name the server certificate.

    Returns the files written.

    Raises:
        FileExistsError: ``out_dir`` holds earlier output and ``replace`` is False.
        ValueError: ``tls_hosts`` is empty.
        OSError: the directory cannot be written.
    """
    out_dir = _out_dir(out_dir, replace=replace)
    agent_users = {f"agent-{encode_token(agent.hostname)}": agent for agent in agents}
    user_names = ["controller", "publisher", *agent_users]
    tls = write_tls_setup(out_dir / "tls", tls_hosts, user_names)
    signers = {name: _write_seed(out_dir / f"{name}.nk") for name in ("controller", "publisher")}
    trusted = ",".join(signer.public_key for signer in signers.values())
    written = [
        write_file(out_dir / "tls.conf", _tls_block(tls)),
        *(out_dir / f"{name}.nk" for name in signers),
    ]
    users: list[dict[str, object]] = []
    for name in user_names:
        user, settings = _user(
            subjects, name, agent_users.get(name), trusted=trusted, out_dir=out_dir, tls=tls
        )
        users.append(user)
        env = "".join(f"{key}={value}\n" for key, value in settings.items())
        written.append(write_file(out_dir / f"{name}.env", env))
    # nats-server reads JSON as its config syntax.
    conf = "authorization " + json.dumps({"users": users}, indent=2) + "\n"
    written.insert(0, write_file(out_dir / "auth.conf", conf))
    return written


def _out_dir(out_dir: Path, *, replace: bool) -> Path:
    """``out_dir`` made if missing, as an absolute path (the .env and tls files name
    absolute paths).

    Raises:
        FileExistsError: it holds earlier output and ``replace`` is False.
        OSError: it cannot be made.
    """
    out_dir = out_dir.resolve()
    if (out_dir / "auth.conf").exists() and not replace:
        raise FileExistsError(
            f"{out_dir} already holds generated secrets; every deployed agent and client "
            "uses them. Move it away, or replace them all (--replace)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _user(
    subjects: Subjects,
    name: str,
    agent: AgentSpec | None,
    *,
    trusted: str,
    out_dir: Path,
    tls: TlsSetup,
) -> tuple[dict[str, object], dict[str, str]]:
    """One NATS user, with a new random password: its entry in ``auth.conf`` (the
    controller's without permissions: it is trusted with every subject) and its
    ``NEXEC_*`` settings: user, password, inbox prefix, signing, TLS files."""
    password = secrets.token_urlsafe(24)
    user: dict[str, object] = {"user": name, "password": password}
    settings = {"NEXEC_NATS_USER": name, "NEXEC_NATS_PASSWORD": password}
    if agent is not None:
        user["permissions"] = agent_permissions(subjects, agent)
        settings["NEXEC_NATS_INBOX_PREFIX"] = subjects.agent_inbox_prefix(agent.hostname)
        settings["NEXEC_TRUSTED_SIGNERS"] = trusted
    elif name == "publisher":
        user["permissions"] = publisher_permissions(subjects)
        settings["NEXEC_NATS_INBOX_PREFIX"] = subjects.publisher_inbox_prefix()
    else:
        settings["NEXEC_JOB_SIGNING_KEY_FILE"] = str(out_dir / "controller.nk")
    settings |= {
        "NEXEC_NATS_TLS_CA_FILE": str(tls.ca),
        "NEXEC_NATS_TLS_CERT_FILE": str(tls.clients[name].cert),
        "NEXEC_NATS_TLS_KEY_FILE": str(tls.clients[name].key),
    }
    return user, settings


def _tls_block(tls: TlsSetup) -> str:
    """A ``tls`` block that requires client certificates signed by the CA; the
    configs include it both for clients and inside ``cluster`` for routes."""
    block = {
        "cert_file": str(tls.server.cert),
        "key_file": str(tls.server.key),
        "ca_file": str(tls.ca),
        "verify": True,
        "timeout": 5,
    }
    return "tls " + json.dumps(block, indent=2) + "\n"


def _write_seed(path: Path) -> JobSigner:
    seed = create_seed()
    write_file(path, seed.decode() + "\n")
    return JobSigner(seed)
