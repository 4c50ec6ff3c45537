"""What ``nexec nats-auth`` generates, as the tests that run deploy/nats/ configs use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nexec.provision.natsauth import AgentSpec, write_nats_auth
from runtime.settings import NatsClientSettings
from schemas.subjects import Subjects

DEPLOY_NATS = Path(__file__).parent.parent / "deploy" / "nats"
TLS_HOSTS = ["localhost", "127.0.0.1"]


@dataclass
class GeneratedAuth:
    """Users, TLS and signing keys written by ``write_nats_auth`` into ``directory``."""

    directory: Path
    env: dict[str, dict[str, str]]
    """``NEXEC_*`` settings per user name."""

    @classmethod
    def write(cls, directory: Path, agents: list[str]) -> GeneratedAuth:
        specs = [AgentSpec.parse(agent) for agent in agents]
        written = write_nats_auth(directory, Subjects(), specs, TLS_HOSTS)
        env = {
            path.stem: dict(line.split("=", 1) for line in path.read_text().splitlines())
            for path in written
            if path.suffix == ".env"
        }
        return cls(directory, env)

    def settings(self, user: str) -> dict[str, str]:
        """The user's settings as config fields (``nats_user``, ``trusted_signers``...)."""
        return {key.removeprefix("NEXEC_").lower(): value for key, value in self.env[user].items()}

    def connect_options(self, user: str, *, with_credentials: bool = True) -> dict[str, Any]:
        """``nats.connect`` arguments for a plain nats-py client acting as ``user``."""
        fields = {k: v for k, v in self.settings(user).items() if k.startswith("nats_")}
        if not with_credentials:
            fields = {k: v for k, v in fields.items() if k not in ("nats_user", "nats_password")}
        return NatsClientSettings.model_validate(fields).nats_connect_options()


def deploy_config(name: str, directory: Path, replacements: dict[str, str]) -> Path:
    """Copy deploy/nats/``name`` into ``directory`` (beside its ``generated/``), with
    ``replacements`` applied (JetStream directory, ports); return the copy."""
    text = (DEPLOY_NATS / name).read_text()
    for old, new in replacements.items():
        assert old in text, f"{old!r} not in deploy/nats/{name}"
        text = text.replace(old, new)
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
