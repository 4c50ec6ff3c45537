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


def test_the_python_client_talks_to_the_http_api_only() -> None:
    """``import nexec`` (the modules beside ``nexec.cli`` and ``nexec.dev``) knows the
    contract's types and nothing of the daemons or of NATS."""
    client_modules = [path for path in (ROOT / "nexec").glob("*.py")]
    wrong = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in client_modules
        for module in imported_modules(path)
        if (within(module, OURS) and not within(module, ("schemas", "nexec")))
        or within(module, ("nats", "nexec.cli", "nexec.dev", "nexec.provision"))
    }
    assert client_modules and wrong == set()


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


BLOCKING_CALLS = ("time.sleep", "wait_gone", "subprocess.run", "spawn_agent")
BLOCKING_METHODS = ("wait_for_line",)
"""Calls that block the event loop; an async test awaits ``asyncio.to_thread`` (or
``tests.helpers.gone``) instead."""


def blocking_calls_in_async_functions(path: Path) -> set[str]:
    found: set[str] = set()
    for function in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name in BLOCKING_CALLS or name.endswith(tuple(f".{m}" for m in BLOCKING_METHODS)):
                found.add(f"{path.relative_to(ROOT)}:{node.lineno}: {function.name}: {name}")
    return found


def test_no_async_test_blocks_the_event_loop() -> None:
    blocking = set().union(
        *(blocking_calls_in_async_functions(path) for path in (ROOT / "tests").rglob("*.py"))
    )
    assert blocking == set()


def test_the_blocking_rule_catches_a_sleep(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import time\n"
        "async def test_x(spawn_agent, p):\n"
        "    time.sleep(1)\n"
        "    await asyncio.to_thread(spawn_agent, 'h')\n"
        "    p.wait_for_line(R, 1)\n"
        "def test_y():\n"
        "    time.sleep(1)\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules[__name__], "ROOT", tmp_path)
        assert blocking_calls_in_async_functions(module) == {
            "m.py:3: test_x: time.sleep",
            "m.py:5: test_x: p.wait_for_line",
        }


def translations_of_nats_errors(path: Path) -> list[int]:
    """Lines of ``path`` where an ``except`` of a NATS error raises a controller error:
    a translation outside ``controller.errors.nats_errors``."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.ExceptHandler) or node.type is None:
            continue
        if "nats." not in ast.unparse(node.type):
            continue
        for inner in ast.walk(ast.Module(body=node.body, type_ignores=[])):
            if isinstance(inner, ast.Raise) and inner.exc is not None:
                raised = ast.unparse(inner.exc)
                if raised.startswith(("NatsUnavailable(", "StorageFull(")):
                    lines.append(inner.lineno)
    return lines


def test_nats_errors_are_translated_in_one_place() -> None:
    """docs/architecture.md: NATS and timeout errors become answers only in
    ``controller.errors.nats_errors``."""
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in sorted((ROOT / "controller").rglob("*.py"))
        if path != ROOT / "controller" / "errors.py"
        for line in translations_of_nats_errors(path)
    ]
    assert found == []


def test_the_translation_rule_catches_one(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "try:\n    pass\nexcept nats.errors.Error as exc:\n"
        "    raise NatsUnavailable(f'x: {exc}') from exc\n"
    )
    assert translations_of_nats_errors(module) == [4]


SHIPPED = ("schemas", "runtime", "controller", "agentd", "nexec")
SUBJECTS_MODULE = ROOT / "schemas" / "subjects.py"
SUBJECT_EXCEPTIONS = {ROOT / "runtime" / "streamwriter.py"}
"""The stream writer's reply subjects are nats-py's inbox plus a write counter, on the
hot path of every write (docs/performance.md); their shape is that module's alone."""


def built_subjects(path: Path) -> list[int]:
    """Lines of ``path`` with an f-string shaped like a subject: ``{a}.{b}``, or one
    ending in the wildcard ``.*`` or ``.>`` (a heuristic: log text is not shaped so)."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = [v.value if isinstance(v, ast.Constant) else None for v in node.values]
        dotted_pair = len(parts) == 3 and parts[0] is None and parts[1] == "." and parts[2] is None
        if dotted_pair or parts[-1] in (".*", ".>"):
            lines.append(node.lineno)
    return lines


def test_subjects_are_built_in_schemas_subjects_only() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in SHIPPED
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != SUBJECTS_MODULE and path not in SUBJECT_EXCEPTIONS
        for line in built_subjects(path)
    ]
    assert found == []


def test_the_subject_rule_catches_one(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('a = f"{p}.{q}"\nb = f"{p}.*"\nc = f"{p}.>"\nd = f"{p}: {q}."\n')
    assert built_subjects(module) == [1, 2, 3]
