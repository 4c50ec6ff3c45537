"""schemathesis against the live ``/openapi.json`` of a real controller process.

Every request the document allows must be accepted (never a 400, 413 or 415),
and every answer must be one the document declares, in its declared shape.
The controller runs as its own process: schemathesis calls it synchronously
(``requests``), which an app on this test's event loop could never answer.
Nothing runs on the agent: its policy allows only ``/bin/true``, and no shell.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from controller.devstack import CONTROLLER_READY_RE
from controller.keys import PERMISSIONS, create_key
from controller.processes import ManagedProcess
from tests.conftest import STARTUP_TIMEOUT_S, NatsServer, SpawnAgent

NATS_CONNECTED_RE = re.compile(r"NATS connected")
AGENT = "fuzz-1"
EXAMPLES_PER_OPERATION = 30
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.positive_data_acceptance,
]


@dataclass
class LiveController:
    url: str
    api_key: str
    process: ManagedProcess


@pytest.fixture
def live_controller(nats_server: NatsServer, tmp_path: Path) -> Iterator[LiveController]:
    """``nexec-controller`` as a process, with one key that may do everything anywhere,
    no rate limit (so that every answer is about the request), once NATS is connected."""
    keys_file = tmp_path / "keys.json"
    api_key = create_key(keys_file, name="fuzz", permissions=sorted(PERMISSIONS), targets=[])
    process = ManagedProcess(
        [
            sys.executable, "-m", "controller",
            "--nats-url", nats_server.url,
            "--listen", "127.0.0.1:0",
            "--keys-file", str(keys_file),
            "--rate-limit", "0",
        ],
        name="controller",
    )  # fmt: skip
    try:
        ready = process.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
        process.wait_for_line(NATS_CONNECTED_RE, STARTUP_TIMEOUT_S)
        yield LiveController(f"http://{ready['host']}:{ready['port']}", api_key, process)
    finally:
        process.stop()


def fuzz_operation(operation: schemathesis.APIOperation, headers: dict[str, str]) -> None:
    """Send ``EXAMPLES_PER_OPERATION`` schema-valid requests; raise on the first failed check."""

    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(schemathesis.GenerationMode.POSITIVE))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)

    run()


def test_every_documented_request_gets_a_documented_answer(
    live_controller: LiveController, spawn_agent: SpawnAgent
) -> None:
    spawn_agent(AGENT, "--allow-command", "/bin/true")
    live_controller.process.wait_for_line(re.compile(rf"agent joined: {AGENT}"), STARTUP_TIMEOUT_S)
    schema = schemathesis.openapi.from_url(live_controller.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {live_controller.api_key}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        try:
            fuzz_operation(operation, headers)
        except FailureGroup as exc:  # every operation runs; all failures are reported together
            failures[operation.label] = str(exc)
    assert len(operations) == 11
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
