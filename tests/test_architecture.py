"""The packages import only what docs/architecture.md allows them."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("schemas", "runtime", "controller", "agentd", "nexec", "tests", "bench")
ALLOWED = {
    "schemas": ("schemas",),
    "runtime": ("schemas", "runtime"),
    "controller": ("schemas", "runtime", "controller"),
    "agentd": ("schemas", "runtime", "agentd"),
    "nexec": ("schemas", "runtime", "nexec", "controller.keys"),
}
SCHEMAS_LIBRARIES = ("msgspec",)
"""The one third-party library the wire contract may use."""


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_what_it_may(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / package).rglob("*.py")
        for module in imported_modules(path)
        if within(module, OURS) and not within(module, ALLOWED[package])
    }
    assert wrong == set()


def test_the_wire_contract_needs_only_msgspec() -> None:
    third_party = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / "schemas").rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] not in sys.stdlib_module_names
        and not within(module, ("schemas", *SCHEMAS_LIBRARIES))
    }
    assert third_party == set()


def test_the_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from controller.jobs import dispatch\nimport agentd.agent\n")
    assert imported_modules(module) == {"controller.jobs", "agentd.agent"}
    assert not within("controller.jobs", ALLOWED["agentd"])
    assert within("controller.keys.store", ALLOWED["nexec"])
    assert not within("controller.http", ALLOWED["nexec"])


def test_no_module_imports_the_fixtures_module() -> None:
    """Shared helpers live in plain modules (tests/helpers.py); conftest.py is pytest's."""
    importers = {
        str(path.relative_to(ROOT))
        for package in ("tests", "bench")
        for path in (ROOT / package).rglob("*.py")
        if any(within(module, ("tests.conftest", "conftest")) for module in imported_modules(path))
    }
    assert importers == set()
