"""schemathesis against the live ``/openapi.json`` of a real controller process.

Every request the document allows must be accepted (never a 400, 413 or 415),
every answer must be one the document declares, in its declared shape, and the
same request without a key must be refused (schemathesis' ``ignored_auth``).
A shorter run of requests the document forbids must get declared 4xx answers.
The controller runs as its own process: schemathesis calls it synchronously
(``requests``), which an app on this test's event loop could never answer.
Nothing runs on the agent: its policy allows only ``/bin/true``, and no shell.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema_rs
import pytest
import requests
import schemathesis
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi import checks as openapi_checks

from controller.app import API
from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from schemas.api import COMMAND_PATTERN, WHITESPACE_CHARS
from schemas.targets import TargetSyntaxError, parse_target, target_json_schema
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    LiveAgent,
    NatsServer,
    SpawnAgent,
)

NATS_CONNECTED_RE = re.compile(r"NATS connected")
AGENT = "fuzz-1"
EXAMPLES_PER_OPERATION = 30
ANSWER_CHECKS: list[CheckFunction] = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]
"""Every answer: no 5xx, a declared status, content type, headers and body."""
CHECKS = {
    schemathesis.GenerationMode.POSITIVE: [
        *ANSWER_CHECKS,
        openapi_checks.positive_data_acceptance,
        openapi_checks.ignored_auth,
    ],
    schemathesis.GenerationMode.NEGATIVE: [
        *ANSWER_CHECKS,
        openapi_checks.negative_data_rejection,
    ],
}


@dataclass
class LiveController:
    url: str
    api_key: str
    process: ManagedProcess


def start_controller(
    nats_server: NatsServer, tmp_path: Path, *, rate_limit: str, burst: str = "100"
) -> Iterator[LiveController]:
    """``nexec-controller`` as a process, with one key that may do everything anywhere,
    once NATS is connected."""
    keys_file = tmp_path / "keys.json"
    api_key = create_key(keys_file, name="fuzz", permissions=sorted(PERMISSIONS), targets=[])
    process = ManagedProcess(
        [
            sys.executable, "-m", "controller",
            "--nats-url", nats_server.url,
            "--listen", "127.0.0.1:0",
            "--keys-file", str(keys_file),
            "--rate-limit", rate_limit,
        ],
        name="controller",
        env={**os.environ, "NEXEC_RATE_LIMIT_BURST": burst},
    )  # fmt: skip
    try:
        ready = process.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
        process.wait_for_line(NATS_CONNECTED_RE, STARTUP_TIMEOUT_S)
        yield LiveController(f"http://{ready['host']}:{ready['port']}", api_key, process)
    finally:
        process.stop()


@pytest.fixture
def live_controller(nats_server: NatsServer, tmp_path: Path) -> Iterator[LiveController]:
    """No rate limit: every answer is about the request."""
    yield from start_controller(nats_server, tmp_path, rate_limit="0")


@pytest.fixture
def limited_controller(nats_server: NatsServer, tmp_path: Path) -> Iterator[LiveController]:
    """One request, then 429 for a long while."""
    yield from start_controller(nats_server, tmp_path, rate_limit="0.01", burst="1")


def fuzz_operation(
    operation: schemathesis.APIOperation,
    headers: dict[str, str],
    *,
    mode: schemathesis.GenerationMode = schemathesis.GenerationMode.POSITIVE,
    examples: int = EXAMPLES_PER_OPERATION,
    path_parameters: dict[str, str] | None = None,
) -> None:
    """Send ``examples`` requests valid (or not) by the document; raise on the first
    failed check."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(mode, path_parameters=path_parameters))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS[mode], timeout=30)

    run()


def fuzz_all(
    operations: list[schemathesis.APIOperation], headers: dict[str, str], **options: Any
) -> dict[str, str]:
    """Every operation runs; the failures of all of them, by operation."""
    failures: dict[str, str] = {}
    for operation in operations:
        try:
            fuzz_operation(operation, headers, **options)
        except hypothesis.errors.Unsatisfiable:  # nothing to make invalid (GET /node)
            assert options.get("mode") is schemathesis.GenerationMode.NEGATIVE
        except FailureGroup as exc:
            failures[f"{operation.label} ({options})"] = str(exc)
    return failures


def test_every_documented_request_gets_a_documented_answer(
    live_controller: LiveController, spawn_agent: SpawnAgent
) -> None:
    spawn_agent(AGENT, "--allow-command", "/bin/true")
    live_controller.process.wait_for_line(re.compile(rf"agent joined: {AGENT}"), STARTUP_TIMEOUT_S)
    url = live_controller.url
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    headers = {"Authorization": f"Bearer {live_controller.api_key}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    # schemathesis leaves out the operation that serves the document itself.
    fuzzed = {(operation.method.upper(), operation.path) for operation in operations}
    assert fuzzed == {(op.method, op.path) for op in API if op.path != "/openapi.json"}
    failures = fuzz_all(operations, headers)
    # Generated job ids are all unknown (404): the job operations again, on a real job,
    # deleting it last (and the fleet running, whichever of pause and resume came last).
    resumed = requests.post(f"{url}/fleet/resume", headers=headers, timeout=30)
    assert resumed.status_code == 200, resumed.text
    ran = requests.post(
        f"{url}/node/{AGENT}/command/exec", json={"command": "true"}, headers=headers, timeout=30
    )
    assert ran.status_code == 202, ran.text
    on_a_job = sorted(
        (operation for operation in operations if "{job_id}" in operation.path),
        key=lambda operation: operation.method == "delete",
    )
    failures |= fuzz_all(
        on_a_job, headers, examples=10, path_parameters={"job_id": ran.json()["job_id"]}
    )
    # Invalid requests: refused with a declared 4xx, never a 5xx.
    failures |= fuzz_all(
        operations, headers, examples=10, mode=schemathesis.GenerationMode.NEGATIVE
    )
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_the_middleware_answers_are_documented(limited_controller: LiveController) -> None:
    """413, 429 and 401 never come from generated requests; each is sent here once."""
    url = limited_controller.url
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    exec_operation = schema["/node/{hostname}/command/exec"]["POST"]
    nodes_operation = schema["/node"]["GET"]
    headers = {"Authorization": f"Bearer {limited_controller.api_key}"}
    too_large = requests.post(
        url + "/node/_all/command/exec",
        json={"command": "true", "args": ["x" * 70_000]},
        headers=headers,
        timeout=30,
    )
    over_rate = requests.get(url + "/node", headers=headers, timeout=30)
    no_key = requests.get(url + "/node", timeout=30)
    for operation, response, status in (
        (exec_operation, too_large, 413),
        (nodes_operation, over_rate, 429),
        (nodes_operation, no_key, 401),
    ):
        assert response.status_code == status, response.text
        assert str(status) in operation.definition.raw["responses"]
        operation.validate_response(response)
    assert int(over_rate.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    "target",
    [
        "web1", "web1.example.com", "a-b_c", "-x", "_any", "_all", "_other", "a..b", ".a",
        "a" * 63, "a" * 64, ".".join(["a" * 63] * 4), "bad host", "wéb", "web1\n",
        "role:web", "role:web,env:prod", "role:web,role:db", "env:a,role:web,env:b",
        "ab:1,a:2", "k:a/b.c", "role:", ":web", "a:b:c", "role:web,", "k:" + "v" * 64,
    ],
)  # fmt: skip
def test_the_document_accepts_exactly_the_targets_the_server_does(target: str) -> None:
    try:
        parse_target(target)
        accepted = True
    except TargetSyntaxError:
        accepted = False
    assert jsonschema_rs.validator_for(target_json_schema()).is_valid(target) == accepted


def test_blank_means_what_str_strip_removes() -> None:
    blank = re.compile(f"[{WHITESPACE_CHARS}]")
    spaces = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
    assert all(blank.fullmatch(char) for char in spaces)
    assert sum(1 for code in range(sys.maxunicode + 1) if blank.fullmatch(chr(code))) == len(spaces)
    command = jsonschema_rs.validator_for({"type": "string", "pattern": COMMAND_PATTERN})
    assert not command.is_valid("\u3000\t ") and command.is_valid(" ls ")
    assert not command.is_valid("ls\x00")


@pytest.fixture
async def ready(controller: Controller, live_agent: LiveAgent) -> Controller:
    await live_agent(controller, "agent-1")
    return controller


async def test_a_whole_float_is_a_whole_number(ready: Controller) -> None:
    """JSON Schema's integer includes 30.0; a body the plain decode refuses is read again."""
    accepted = await ready.exec("agent-1", {"command": "true", "timeout": 30.0})
    assert accepted.status == 202, accepted.body
    cut_short = await ready.request(
        "POST", "/node/agent-1/command/exec", data=b'{"timeout": "x", garbage'
    )
    assert cut_short.status == 400
    assert cut_short.body["details"].startswith("body: invalid JSON")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/job?limit=" + "0" * 5000 + "1", 200),
        ("/job?limit=" + "9" * 5000, 400),
        ("/job?cursor=" + "1" * 21, 400),
        ("/audit?cursor=" + "0" * 30 + "1", 200),
    ],
)
async def test_long_numbers_are_numbers_not_500s(
    controller: Controller, path: str, status: int
) -> None:
    response = await controller.request("GET", path)
    assert response.status == status, response.body
