"""Loading a process's typed settings from a TOML file, ``NEXEC_*`` variables and flags.

Each process (controller, agent) declares one pydantic model of its settings
and calls :func:`load_settings` once in ``main``. Later sources win:
defaults < config file < environment < command-line flags. It lives here
because ``schemas`` is the one package both processes share.
"""

from __future__ import annotations

import argparse
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic

ENV_PREFIX = "NEXEC_"

SettingsT = TypeVar("SettingsT", bound=pydantic.BaseModel)


class SettingsError(ValueError):
    """The settings are invalid or the config file cannot be read; the message says which."""


def load_settings(
    model: type[SettingsT],
    *,
    config_file: Path | None,
    environ: Mapping[str, str],
    flags: Mapping[str, Any],
) -> SettingsT:
    """Merge the sources and validate them into ``model``.

    ``flags`` holds only the flags given on the command line (no ``None``).
    An environment variable is ``NEXEC_`` plus the field name in upper case.

    Raises:
        SettingsError: the file is unreadable or not TOML, or a value is invalid.
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_toml(config_file))
    for name in model.model_fields:
        env_value = environ.get(ENV_PREFIX + name.upper())
        if env_value is not None:
            values[name] = env_value
    values.update(flags)
    try:
        return model.model_validate(values)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc


def given_flags(args: argparse.Namespace, *, exclude: set[str]) -> dict[str, Any]:
    """The settings given as command-line flags: every attribute that is not None."""
    return {
        name: value
        for name, value in vars(args).items()
        if value is not None and name not in exclude
    }


def server_urls(nats_url: str) -> list[str]:
    """The servers of a ``nats_url`` setting: one URL or several separated by commas
    (the nodes of a cluster; the client also learns the others from the first)."""
    return [url.strip() for url in nats_url.split(",") if url.strip()]


class NatsClientSettings(pydantic.BaseModel):
    """How a process authenticates to NATS and secures the connection; shared by the
    controller's and the agent's settings (``NEXEC_NATS_USER``, ``nats_creds_file``...)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds_file: Path | None = None
    """A ``.creds`` file (user JWT and nkey seed) for decentralized auth."""
    nats_nkey_seed_file: Path | None = None
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None
    nats_inbox_prefix: str | None = None
    """Reply subjects start with this instead of ``_INBOX``: lets NATS permissions give
    each agent an inbox nobody else may read (``nexec nats-auth`` sets it)."""

    @pydantic.model_validator(mode="after")
    def _check_pairs(self) -> NatsClientSettings:
        if (self.nats_user is None) != (self.nats_password is None):
            raise ValueError("nats_user and nats_password go together")
        if (self.nats_tls_cert_file is None) != (self.nats_tls_key_file is None):
            raise ValueError("nats_tls_cert_file and nats_tls_key_file go together")
        return self

    def nats_connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.aio.client.Client.connect``.

        Raises:
            OSError, ssl.SSLError: a TLS file cannot be read.
        """
        options: dict[str, Any] = {}
        if self.nats_user is not None:
            options["user"] = self.nats_user
            options["password"] = self.nats_password
        if self.nats_creds_file is not None:
            options["user_credentials"] = str(self.nats_creds_file)
        if self.nats_nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nats_nkey_seed_file)
        if self.nats_inbox_prefix is not None:
            options["inbox_prefix"] = self.nats_inbox_prefix
        if self.nats_tls_ca_file is not None or self.nats_tls_cert_file is not None:
            context = ssl.create_default_context(
                cafile=str(self.nats_tls_ca_file) if self.nats_tls_ca_file else None
            )
            if self.nats_tls_cert_file is not None and self.nats_tls_key_file is not None:
                context.load_cert_chain(str(self.nats_tls_cert_file), str(self.nats_tls_key_file))
            options["tls"] = context
        return options


def add_nats_client_flags(parser: argparse.ArgumentParser) -> None:
    """The command-line flags of :class:`NatsClientSettings` (prefer the environment or the
    config file for the password: flags show in the process list)."""
    group = parser.add_argument_group("NATS authentication and TLS")
    group.add_argument("--nats-user", dest="nats_user")
    group.add_argument("--nats-password", dest="nats_password")
    group.add_argument("--nats-creds", dest="nats_creds_file", type=Path, metavar="FILE")
    group.add_argument("--nats-nkey-seed", dest="nats_nkey_seed_file", type=Path, metavar="FILE")
    group.add_argument("--nats-tls-ca", dest="nats_tls_ca_file", type=Path, metavar="FILE")
    group.add_argument("--nats-tls-cert", dest="nats_tls_cert_file", type=Path, metavar="FILE")
    group.add_argument("--nats-tls-key", dest="nats_tls_key_file", type=Path, metavar="FILE")
