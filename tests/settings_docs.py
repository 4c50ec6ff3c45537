"""The settings tables of docs/operations.md and deploy/examples/*.toml, made from the models.

``make docs`` (``python -m tests.settings_docs``) rewrites them; tests/test_settings_docs.py
fails when they differ from what the declarations give. Each table sits between
``<!-- settings:NAME begin ... -->`` and ``<!-- settings:NAME end -->`` in docs/operations.md;
the example files are made whole.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
from pydantic.fields import FieldInfo

from agentd.config import AgentConfig
from controller.config import ControllerConfig
from runtime.settings import (
    NatsClientSettings,
    declared,
    flag_of,
    help_line,
    is_repeatable,
    shown_default,
    unit_of,
)

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
NATS_FIELDS = list(NatsClientSettings.model_fields)
UNIT_SYMBOLS = {"seconds": "s", "per second": "per s"}


@dataclass(frozen=True)
class Target:
    """One process: its model, where it is declared, its table and its example file."""

    name: str
    model: type[pydantic.BaseModel]
    source: str
    example: Path
    command: str

    def own_fields(self) -> list[str]:
        return [name for name in self.model.model_fields if name not in NATS_FIELDS]


TARGETS = [
    Target("controller", ControllerConfig, "controller/config.py",
           ROOT / "deploy/examples/controller.toml", "nexec-controller"),
    Target("agent", AgentConfig, "agentd/config.py",
           ROOT / "deploy/examples/agent.toml", "nexec-agentd"),
]  # fmt: skip
NATS_TABLE = ("nats", NatsClientSettings, "runtime/settings.py", NATS_FIELDS)


def begin_marker(name: str, source: str) -> str:
    return f"<!-- settings:{name} begin: made by `make docs` from {source}; edit there -->"


def end_marker(name: str) -> str:
    return f"<!-- settings:{name} end -->"


def meaning(info: FieldInfo) -> str:
    """The help line, then the details the docs add to it."""
    details = declared(info).get("details")
    text = info.description or ""
    return f"{text}. {details}" if details else text


def _size(value: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size and value % size == 0:
            return f" ({value // size} {unit})"
    return ""


def default_cell(name: str, info: FieldInfo) -> str:
    """The default as the table shows it, with its unit."""
    text = shown_default(info)
    value = info.get_default(call_default_factory=True)
    if "shown_default" in declared(info) or value is None or isinstance(value, bool | list):
        return text
    if isinstance(value, str | Path):
        return f"`{text}`"
    if isinstance(value, dict):
        return ", ".join(f"`{key}={item}`" for key, item in value.items()) or text
    unit = unit_of(name)
    if unit == "bytes":
        return f"{text}{_size(int(value))}"
    return f"{text} {UNIT_SYMBOLS[unit]}" if unit in UNIT_SYMBOLS else text


def flags_cell(name: str, info: FieldInfo) -> str:
    flags = [flag_of(name), *declared(info).get("aliases", [])]
    metavar = declared(info).get("metavar")
    cell = ", ".join(f"`{flag}{' ' + metavar if metavar else ''}`" for flag in flags)
    if info.annotation is bool:
        return f"{cell}, `--no-{flag_of(name)[2:]}`"
    return f"{cell} (repeat)" if is_repeatable(info) else cell


def markdown_table(model: type[pydantic.BaseModel], names: list[str]) -> str:
    rows = ["| field | flag (older spellings after the first) | default | meaning |"]
    rows.append("|---|---|---|---|")
    for name in names:
        info = model.model_fields[name]
        cells = [f"`{name}`", flags_cell(name, info), default_cell(name, info), meaning(info)]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=88, initial_indent="# ", subsequent_indent="# ")


def example_entry(name: str, info: FieldInfo) -> list[str]:
    """One setting of an example file: its help as a comment, then the key; commented out
    when its default depends on the machine or is none. A table is commented out whole."""
    lines = _comment(help_line(name, info))
    extra = declared(info)
    default = info.get_default(call_default_factory=True)
    value = extra.get("example", default)
    off = "# " if default is None or "shown_default" in extra else ""
    if isinstance(value, dict):
        return [*lines, f"# [{name}]", *(f"# {k} = {toml_value(v)}" for k, v in value.items())]
    if value is None:
        value = "..."
    return [*lines, f"{off}{name} = {toml_value(value)}"]


def example_file(target: Target) -> str:
    file = f"/etc/nexec/{target.example.name}"
    lines = [
        f"# {target.command} --config {file}",
        f"# Made by `make docs` from {target.source} and runtime/settings.py: edit the fields "
        "there.",
        "# Every key is also NEXEC_<KEY> in the environment and --<key> (dashes for underscores)",
        "# on the command line; flags beat the environment, which beats this file.",
    ]
    model = target.model
    names = target.own_fields()
    scalars = [n for n in names if not isinstance(_example(model, n), dict)]
    tables = [n for n in names if isinstance(_example(model, n), dict)]
    for name in scalars:
        lines += ["", *example_entry(name, model.model_fields[name])]
    lines += ["", "# NATS authentication and TLS"]
    for name in NATS_FIELDS:
        lines += ["", *example_entry(name, model.model_fields[name])]
    for name in tables:
        lines += ["", "# A table must come last in TOML: uncomment it to set it."]
        lines += example_entry(name, model.model_fields[name])
    return "\n".join(lines) + "\n"


def _example(model: type[pydantic.BaseModel], name: str) -> Any:
    info = model.model_fields[name]
    return declared(info).get("example", info.get_default(call_default_factory=True))


def replace_marked(text: str, name: str, source: str, body: str) -> str:
    """``text`` with what is between the markers of table ``name`` replaced by ``body``.

    Raises:
        ValueError: the markers are missing.
    """
    pattern = re.compile(
        rf"<!-- settings:{name} begin[^\n]*-->\n.*?{re.escape(end_marker(name))}", re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"docs/operations.md has no markers for the {name} settings table")
    block = f"{begin_marker(name, source)}\n{body}\n{end_marker(name)}"
    return pattern.sub(lambda _: block, text, count=1)


def expected_files() -> dict[Path, str]:
    """Every generated file and the text it must hold."""
    operations = OPERATIONS.read_text()
    for target in TARGETS:
        table = markdown_table(target.model, target.own_fields())
        operations = replace_marked(operations, target.name, target.source, table)
    name, model, source, names = NATS_TABLE
    operations = replace_marked(operations, name, source, markdown_table(model, names))
    files = {OPERATIONS: operations}
    files.update({target.example: example_file(target) for target in TARGETS})
    return files


def main() -> int:
    for path, text in expected_files().items():
        if path.read_text() != text:
            path.write_text(text)
            print(f"rewrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
