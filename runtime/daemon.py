"""What both daemons' command lines share: ``--config``, ``--log-level`` and one flag
per setting; the log format; loading the settings once in ``main``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from runtime.settings import SettingsT, add_setting_flags, given_flags, load_settings

SOURCES = (
    "Every setting is a flag --<field> (older spellings kept), NEXEC_<FIELD> in the "
    "environment and <field> in the TOML config file; flags beat the environment, which "
    "beats the file."
)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def daemon_parser(prog: str, description: str, model: type[SettingsT]) -> argparse.ArgumentParser:
    """The daemon's parser: ``--config FILE``, ``--log-level`` and ``model``'s flags."""
    parser = argparse.ArgumentParser(prog=prog, description=f"{description} {SOURCES}")
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--log-level", default="INFO")
    add_setting_flags(parser, model)
    return parser


def start_daemon(model: type[SettingsT], args: argparse.Namespace) -> SettingsT:
    """Log to stderr at ``--log-level``, then load ``model`` from the config file, the
    environment and the flags given.

    Raises:
        SettingsError: the settings are invalid or the config file cannot be read.
    """
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    return load_settings(
        model,
        config_file=args.config,
        environ=os.environ,
        flags=given_flags(args, exclude={"config", "log_level"}),
    )
