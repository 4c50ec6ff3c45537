"""docs/operations.md's settings tables and deploy/examples/*.toml name every setting, and only
settings, with the declared defaults; ``make docs`` rewrites them from the declarations."""

from __future__ import annotations

import re
import tomllib

import pydantic
import pytest

from tests.settings_docs import (
    NATS_FIELDS,
    NATS_TABLE,
    OPERATIONS,
    ROOT,
    TARGETS,
    Target,
    default_cell,
    end_marker,
    expected_files,
)

TABLES = [(t.name, t.model, t.own_fields()) for t in TARGETS] + [
    (NATS_TABLE[0], NATS_TABLE[1], NATS_TABLE[3])
]


def documented_rows(text: str, table: str) -> dict[str, str]:
    """Field name -> default cell of each row of one settings table of docs/operations.md."""
    match = re.search(
        rf"<!-- settings:{table} begin[^\n]*-->\n(.*?){re.escape(end_marker(table))}",
        text,
        re.DOTALL,
    )
    assert match, f"docs/operations.md has no settings:{table} markers"
    rows = {}
    for line in match.group(1).splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0].strip("`")] = cells[2]
    return rows


def example_keys(text: str) -> set[str]:
    """Every key an example file sets or shows commented out (``# key = ...``, ``# [table]``)."""
    keys = set(tomllib.loads(text))
    keys |= set(re.findall(r"^# ([a-z_]+) = ", text, re.MULTILINE))
    keys |= set(re.findall(r"^# \[([a-z_]+)\]$", text, re.MULTILINE))
    return keys


def _differences(named: set[str], declared: set[str]) -> str:
    return f"unknown: {sorted(named - declared)}, missing: {sorted(declared - named)}"


@pytest.mark.parametrize(("table", "model", "names"), TABLES)
def test_docs_tables_name_every_setting_with_its_default(
    table: str, model: type[pydantic.BaseModel], names: list[str]
) -> None:
    rows = documented_rows(OPERATIONS.read_text(), table)
    assert set(rows) == set(names), _differences(set(rows), set(names))
    for name in names:
        assert rows[name] == default_cell(name, model.model_fields[name]), name


@pytest.mark.parametrize("target", TARGETS, ids=lambda target: target.name)
def test_example_files_name_every_setting(target: Target) -> None:
    keys = example_keys(target.example.read_text())
    declared = set(target.model.model_fields)
    assert keys == declared, _differences(keys, declared)
    assert set(NATS_FIELDS) <= declared


def test_generated_files_are_up_to_date() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in expected_files().items()
        if path.read_text() != text
    ]
    assert not stale, f"run `make docs`: {stale} differ from the settings declarations"


def test_the_checks_see_drift() -> None:
    """A missing row, an unknown key or a wrong default is caught (as they were before)."""
    text = OPERATIONS.read_text().replace("| `rate_limit_burst` |", "| `rate_limit_bursts` |")
    rows = documented_rows(text, "controller")
    assert "rate_limit_burst" not in rows and "rate_limit_bursts" in rows
    agent = TARGETS[1]
    example = agent.example.read_text().replace("kill_grace_s = 2.0", "kill_grace = 2.0")
    assert example_keys(example) ^ set(agent.model.model_fields) == {"kill_grace", "kill_grace_s"}
