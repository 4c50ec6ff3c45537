"""Loading a process's typed settings from a TOML file, ``NEXEC_*`` variables and flags.

Each process (controller, agent) declares one pydantic model of its settings
and calls :func:`load_settings` once in ``main``. Later sources win:
defaults < config file < environment < command-line flags. It lives here
because ``schemas`` is the one package both processes share.
"""

from __future__ import annotations

import argparse
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
