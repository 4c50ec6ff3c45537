"""What both daemons' command lines share: ``--config``, ``--log-level`` and one flag
per setting; loading the settings once in ``main``, then logging as they say."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TypeVar

import pydantic

from runtime.logs import LogSettings, configure_logging
from runtime.service import ServiceSettings
from runtime.settings import (
    NatsClientSettings,
    SubjectSettings,
    add_setting_flags,
    given_flags,
    load_settings,
)


class DaemonSettings(NatsClientSettings, LogSettings, ServiceSettings, SubjectSettings):
    """What the settings of each daemon (``ControllerConfig``, ``AgentConfig``) share: the
    NATS client's, the log format, the service's, and the check of ``subject_prefix``
    (each declares that field itself, with its own help)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


DaemonSettingsT = TypeVar("DaemonSettingsT", bound=LogSettings)

SOURCES = (
    "Every setting is a flag --<field> (older spellings kept), NEXEC_<FIELD> in the "
    "environment and <field> in the TOML config file; flags beat the environment, which "
    "beats the file."
)


def daemon_parser(prog: str, description: str, model: type[LogSettings]) -> argparse.ArgumentParser:
    """The daemon's parser: ``--config FILE``, ``--log-level`` and ``model``'s flags."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{description} {SOURCES}")
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--log-level", default="INFO")
    add_setting_flags(parser, model)
    return parser


def start_daemon(model: type[DaemonSettingsT], args: argparse.Namespace) -> DaemonSettingsT:
    """Load ``model`` from the config file, the environment and the flags given, then
    log to stderr at ``--log-level`` in its ``log_format``.

    Raises:
        SettingsError: the settings are invalid or the config file cannot be read.
        ValueError: ``--log-level`` is not a logging level name.
    """
    settings = load_settings(
        model,
        config_file=args.config,
        environ=os.environ,
        flags=given_flags(args, exclude={"config", "log_level"}),
    )
    configure_logging(args.log_level, settings.log_format, settings.log_context())
    return settings
