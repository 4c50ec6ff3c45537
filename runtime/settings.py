"""Each process's settings: declared once, loaded from a TOML file, ``NEXEC_*`` variables and flags.

Each process (controller, agent) declares one pydantic model of its settings, every
field through :func:`setting` (type, default, constraints, one-line help, old flag
spellings), and calls :func:`load_settings` once in ``main``. Later sources win:
defaults < config file < environment < command-line flags. From each field come its
TOML key (the field name), its variable (``NEXEC_`` + the name in upper case), its
flag (``--`` + the name with dashes, :func:`add_setting_flags`) with its ``--help``
text, and its rows in docs/operations.md and deploy/examples (:mod:`schemas.settings_docs`).
The unit follows from the name: ``_s`` seconds, ``_per_s`` per second, ``_bytes`` bytes.
It lives here because ``schemas`` is the one package both processes share.
"""

from __future__ import annotations

import argparse
import ssl
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pydantic
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from schemas.subjects import Subjects

ENV_PREFIX = "NEXEC_"

SettingsT = TypeVar("SettingsT", bound=pydantic.BaseModel)


class SettingsError(ValueError):
    """The settings are invalid or the config file cannot be read; the message says which."""


def setting(
    default: Any = PydanticUndefined,
    *,
    help: str,
    details: str | None = None,
    aliases: Sequence[str] = (),
    metavar: str | None = None,
    shown_default: str | None = None,
    example: Any = None,
    default_factory: Callable[[], Any] | None = None,
    **constraints: Any,
) -> Any:
    """Declare one setting: the only place it is written down.

    ``help`` is the one-line ``--help`` text (lower case, no final period); ``details``
    adds to it in docs/operations.md. ``aliases`` are older flag spellings that keep
    working. ``shown_default`` replaces the default where it depends on the machine
    (then the example file shows ``example`` commented out). ``example`` is the value
    the example file shows instead of the default. ``constraints`` go to
    :func:`pydantic.Field` (``gt``, ``le``, ``max_length``...).
    """
    extra: dict[str, Any] = {"aliases": list(aliases)}
    for key, value in (
        ("details", details),
        ("metavar", metavar),
        ("shown_default", shown_default),
        ("example", example),
    ):
        if value is not None:
            extra[key] = value
    if default_factory is not None:
        return pydantic.Field(
            default_factory=default_factory,
            description=help,
            json_schema_extra=extra,
            **constraints,
        )
    return pydantic.Field(default, description=help, json_schema_extra=extra, **constraints)


def declared(info: FieldInfo) -> dict[str, Any]:
    """What :func:`setting` noted beyond pydantic's own arguments (empty if not used)."""
    extra = info.json_schema_extra
    return dict(extra) if isinstance(extra, dict) else {}


def flag_of(name: str) -> str:
    """The flag of a setting: ``rate_limit_per_s`` -> ``--rate-limit-per-s``."""
    return "--" + name.replace("_", "-")


def env_of(name: str) -> str:
    """The environment variable of a setting: ``NEXEC_`` and the name in upper case."""
    return ENV_PREFIX + name.upper()


def unit_of(name: str) -> str | None:
    """The unit a setting's name says, by its suffix (None: no unit)."""
    for suffix, unit in (("_per_s", "per second"), ("_s", "seconds"), ("_bytes", "bytes")):
        if name.endswith(suffix):
            return unit
    return None


def _metavar(name: str, info: FieldInfo) -> str | None:
    explicit = declared(info).get("metavar")
    if explicit is not None:
        return str(explicit)
    for suffix, metavar in (
        ("_per_s", "PER_SECOND"),
        ("_s", "SECONDS"),
        ("_bytes", "BYTES"),
        ("_file", "FILE"),
        ("_dir", "DIR"),
    ):
        if name.endswith(suffix):
            return metavar
    return None


def shown_default(info: FieldInfo) -> str:
    """The default as the docs and ``--help`` show it."""
    explicit = declared(info).get("shown_default")
    if explicit is not None:
        return str(explicit)
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict) and not value:
        return "empty"
    if isinstance(value, dict):
        return ", ".join(f"{key}={item}" for key, item in value.items())
    return str(value)


def help_line(name: str, info: FieldInfo) -> str:
    """The one-line help, with the unit its name says unless the help says it already."""
    text = info.description or ""
    unit = unit_of(name)
    return f"{text} ({unit})" if unit and unit not in text else text


def is_repeatable(info: FieldInfo) -> bool:
    """A list or table setting: its flag is given once per item."""
    return typing.get_origin(info.annotation) in (list, dict)


def add_setting_flags(parser: argparse.ArgumentParser, model: type[pydantic.BaseModel]) -> None:
    """One flag per field of ``model``, with its older spellings, help, unit and variable.

    Every flag defaults to None (not given), so :func:`given_flags` sees only what the
    command line set. Booleans also get ``--no-<flag>``; list and table settings are
    repeated, one item each. The NATS client settings get their own ``--help`` section
    (prefer the environment or the file for the password: flags show in the process list).

    Raises:
        argparse.ArgumentError: two fields or aliases claim the same flag.
    """
    groups = {
        False: parser.add_argument_group("settings"),
        True: parser.add_argument_group("NATS authentication and TLS"),
    }
    for name, info in model.model_fields.items():
        group = groups[name in NatsClientSettings.model_fields]
        options = [flag_of(name), *declared(info).get("aliases", [])]
        help_text = f"{help_line(name, info)}; default {shown_default(info)}; {env_of(name)}"
        help_text = help_text.replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": help_text}
        if info.annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = _metavar(name, info)
            if is_repeatable(info):
                kwargs["action"] = "append"
            elif info.annotation in (int, float):
                kwargs["type"] = info.annotation
        group.add_argument(*options, **kwargs)


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
        env_value = environ.get(env_of(name))
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


def urls_shown(nats_url: str) -> str:
    """``nats_url`` as logs show it: each server without its user, password or token
    (``nats://user:secret@host:4222`` -> ``nats://host:4222``)."""
    shown = []
    for url in server_urls(nats_url):
        scheme, separator, rest = url.partition("://")
        if not separator:
            scheme, rest = "", url
        authority, slash, path = rest.partition("/")
        shown.append(f"{scheme}{separator}{authority.rpartition('@')[2]}{slash}{path}")
    return ",".join(shown)


class SubjectSettings(pydantic.BaseModel):
    """The check of ``subject_prefix`` and the subject names it makes, shared by the
    controller's and the agent's settings. Each declares the field itself, with its own
    help, where it stands in its settings (so in ``--help`` and the docs tables)."""

    if TYPE_CHECKING:
        subject_prefix: str

    @pydantic.field_validator("subject_prefix", check_fields=False)
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        Subjects(value)
        return value

    @property
    def subjects(self) -> Subjects:
        """Every subject, stream and bucket name under this ``subject_prefix``."""
        return Subjects(self.subject_prefix)


class NatsClientSettings(pydantic.BaseModel):
    """How a process authenticates to NATS and secures the connection; shared by the
    controller's and the agent's settings (``NEXEC_NATS_USER``, ``nats_creds_file``...)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    nats_url: str = setting(
        "nats://127.0.0.1:4222",
        help="one URL, or several separated by commas",
        details="Cluster nodes; the client learns the others from the first it reaches",
    )
    connect_timeout_s: float = setting(
        5.0,
        gt=0,
        help="limit for each attempt at connecting to NATS, and for closing the connection",
        details="Rounded to whole seconds (at least 1) for the connection attempt",
    )
    reconnect_wait_s: float = setting(
        2.0,
        gt=0,
        le=60,
        help="pause before trying a NATS server again once the connection to it was lost",
        details="nats-py's `reconnect_time_wait`; the connection is retried without end",
        aliases=["--reconnect-wait"],
    )
    nats_user: str | None = setting(
        None,
        help="user name, given with nats_password",
        example="agent-web1",
    )
    nats_password: str | None = setting(
        None,
        help="password of nats_user",
        details="Give it through the environment or the file: flags show in the process list",
        example="...",
    )
    nats_creds_file: Path | None = setting(
        None,
        help="a `.creds` file (user JWT and nkey seed) for decentralized auth",
        aliases=["--nats-creds"],
        example="/etc/nexec/nats.creds",
    )
    nats_nkey_seed_file: Path | None = setting(
        None,
        help="an nkey seed file",
        aliases=["--nats-nkey-seed"],
        example="/etc/nexec/nats.nk",
    )
    nats_tls_ca_file: Path | None = setting(
        None,
        help="CA that verifies the server; setting it turns TLS on",
        aliases=["--nats-tls-ca"],
        example="/etc/nexec/tls/ca.pem",
    )
    nats_tls_cert_file: Path | None = setting(
        None,
        help="client certificate, given with nats_tls_key_file",
        aliases=["--nats-tls-cert"],
        example="/etc/nexec/tls/client.pem",
    )
    nats_tls_key_file: Path | None = setting(
        None,
        help="key of the client certificate",
        aliases=["--nats-tls-key"],
        example="/etc/nexec/tls/client-key.pem",
    )
    nats_inbox_prefix: str | None = setting(
        None,
        help="reply subjects start with this instead of `_INBOX`",
        details="`nexec nats-auth` sets it for agents and the publisher, so that their inbox "
        "is private: NATS permissions give each one an inbox nobody else may read",
        example="_INBOX_agent_web1",
    )

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
        options: dict[str, Any] = {"reconnect_time_wait": self.reconnect_wait_s}
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
