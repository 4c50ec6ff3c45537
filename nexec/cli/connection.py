"""Where the client commands connect, and with which key.

Each setting comes from the first of: a flag, the environment, the config file::

    url       --url            NEXEC_URL            url = "..."
    key       --key            NEXEC_API_KEY        api_key = "..."
              --key-file F     NEXEC_API_KEY_FILE   api_key_file = "..."
    file      --config F       NEXEC_CONFIG         ~/.config/nexec/client.toml

A key given on the command line (``--key``) is visible to every user of the machine in
the process list; one from the environment or a file is not, and nexec never prints it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_URL = "http://127.0.0.1:8080"
"""The same as ``nexec.DEFAULT_URL`` (not imported from there: that would load aiohttp)."""
DEFAULT_CONFIG = Path("~/.config/nexec/client.toml")
FILE_FIELDS = frozenset({"url", "api_key", "api_key_file"})


class SettingsError(Exception):
    """Connection settings that cannot be used: a config file or key file that cannot be
    read, a key given twice at one level, an unknown field in the config file."""


class Connection(msgspec.Struct, frozen=True):
    url: str
    api_key: str
    key_source: str
    """Where the key came from (``--key``, ``NEXEC_API_KEY``...): for messages, never the key."""

    def __repr__(self) -> str:
        return f"Connection(url={self.url!r}, key from {self.key_source})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags, on every client subcommand."""
    group = parser.add_argument_group("connection (flag > environment > config file)")
    group.add_argument("--url", help=f"the controller (NEXEC_URL; default {DEFAULT_URL})")
    group.add_argument(
        "--key",
        help="API key (NEXEC_API_KEY). Visible in the process list: prefer the "
        "environment or --key-file",
    )
    group.add_argument(
        "--key-file", type=Path, metavar="FILE", help="file holding the key (NEXEC_API_KEY_FILE)"
    )
    group.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"config file (NEXEC_CONFIG; default {DEFAULT_CONFIG})",
    )


def connection(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Connection:
    """The connection the flags, ``env`` and the config file give.

    Raises:
        SettingsError: a file cannot be read or is invalid, or a level gives two keys.
    """
    config = read_config(args.config, env)
    return resolve(
        {"url": args.url, "api_key": args.key, "api_key_file": args.key_file},
        {
            "url": env.get("NEXEC_URL"),
            "api_key": env.get("NEXEC_API_KEY"),
            "api_key_file": env.get("NEXEC_API_KEY_FILE"),
        },
        config,
    )


def resolve(
    flags: Mapping[str, Any], environment: Mapping[str, Any], config: Mapping[str, Any]
) -> Connection:
    """The first level (flags, then environment, then config file) that sets each of the
    url and the key; a key file is read only when its level wins.

    Raises:
        SettingsError: a level sets both a key and a key file; a key file cannot be read.
    """
    levels = (("flag", flags), ("environment", environment), ("config file", config))
    url = next((level["url"] for _, level in levels if level.get("url")), DEFAULT_URL)
    for name, level in levels:
        key, key_file = level.get("api_key"), level.get("api_key_file")
        if key and key_file:
            raise SettingsError(f"the {name} gives both a key and a key file: give one")
        if key:
            return Connection(str(url), str(key), f"the {name}")
        if key_file:
            return Connection(str(url), read_key_file(Path(key_file)), f"the {name}'s key file")
    return Connection(str(url), "", "nowhere")


def read_key_file(path: Path) -> str:
    """The key in ``path`` (its first line, surrounding blanks stripped).

    Raises:
        SettingsError: the file cannot be read or holds no key.
    """
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read the key file {str(path)!r}: {exc}") from exc
    lines = text.strip().splitlines()
    if not lines:
        raise SettingsError(f"the key file {str(path)!r} is empty")
    return lines[0].strip()


def read_config(path: Path | None, env: Mapping[str, str]) -> dict[str, Any]:
    """The config file's fields: ``path``, else ``NEXEC_CONFIG``, else the default file
    if it exists (an explicit file must exist).

    Raises:
        SettingsError: the file cannot be read, is not TOML, or has an unknown field.
    """
    explicit = path or (Path(env["NEXEC_CONFIG"]) if env.get("NEXEC_CONFIG") else None)
    chosen = (explicit or DEFAULT_CONFIG).expanduser()
    if explicit is None and not chosen.is_file():
        return {}
    import tomllib  # noqa: PLC0415 (only where a file is read: ~2 ms of every start-up)

    try:
        fields = tomllib.loads(chosen.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read the config file {str(chosen)!r}: {exc}") from exc
    unknown = set(fields) - FILE_FIELDS
    if unknown:
        raise SettingsError(
            f"unknown field(s) in {str(chosen)!r}: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(FILE_FIELDS))})"
        )
    if "api_key_file" in fields:  # relative to the config file
        fields["api_key_file"] = chosen.parent / Path(fields["api_key_file"]).expanduser()
    return fields
