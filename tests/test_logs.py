"""Structured logs: both daemons, as real processes, with ``--log-format json``
(or ``NEXEC_LOG_FORMAT=json``) write one JSON object per line, with the fields of a
job as their own keys, their shutdown summaries as one object each, and never an
API key or a password; the default text format stays as it was."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import pytest
from nats.aio.msg import Msg

from controller.appkeys import NATS_LINK
from controller.keys.store import PERMISSIONS, create_key
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import AGENT_READY_RE, CONTROLLER_READY_RE
from runtime.logs import JsonFormatter, log_fields
from runtime.signing import write_seed_file
from tests.helpers import STARTUP_TIMEOUT_S, Controller, NatsServer

PASSWORD = "Pw-sekret-4242"
EXEC = "/node/h1/command/exec"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


def url_with_password(nats_server: NatsServer) -> str:
    """The server's URL with a user and password in it (a server without
    authentication accepts any)."""
    return nats_server.url.replace("nats://", f"nats://logs-user:{PASSWORD}@")


class Daemons:
    """A controller and an agent (``h1``, which may run ``true`` only) as processes,
    every output line of each echoed into a file."""

    def __init__(
        self, tmp_path: Path, nats_url: str, controller_args: list[str], agent_args: list[str],
        agent_env: dict[str, str],
    ) -> None:  # fmt: skip
        self.tmp_path = tmp_path
        keys_file = tmp_path / "keys.json"
        self.key = create_key(keys_file, name="ops", permissions=sorted(PERMISSIONS), targets=[])
        self._echoes: list[TextIO] = []
        self.controller = self._start(
            "controller",
            ["controller", "--listen", "127.0.0.1:0", "--keys-file", str(keys_file),
             "--nats-url", nats_url, *controller_args],
            {},
        )  # fmt: skip
        ready = self.controller.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
        self.port = int(ready["port"])
        self.agent = self._start(
            "agent",
            ["agentd", "--hostname", "h1", "--heartbeat-interval", "30", "--allow-command", "true",
             "--state-dir", str(tmp_path / "agent-state"), "--nats-url", nats_url, *agent_args],
            agent_env,
        )  # fmt: skip
        self.agent.wait_for_line(AGENT_READY_RE, STARTUP_TIMEOUT_S)
        self.controller.wait_for_line(re.compile("agent joined: h1"), STARTUP_TIMEOUT_S)

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> ManagedProcess:
        echo = (self.tmp_path / f"{name}.log").open("w")
        self._echoes.append(echo)
        return ManagedProcess(
            [sys.executable, "-m", *args], name=name, echo=echo, env={**os.environ, **env}
        )

    async def post(self, path: str, body: Any, key: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    def stop(self) -> None:
        """Stop both (SIGTERM); safe to call twice."""
        for process in (getattr(self, "agent", None), getattr(self, "controller", None)):
            if process is not None:
                process.stop()
        for echo in self._echoes:
            echo.close()

    def lines(self, name: str) -> list[str]:
        """Every line the process wrote, without the ``[name]`` prefix of the echo."""
        prefix = f"[{name}] "
        text = (self.tmp_path / f"{name}.log").read_text()
        return [line.removeprefix(prefix) for line in text.splitlines()]

    def whole_output(self) -> str:
        return "\n".join(self.lines("controller") + self.lines("agent"))


@pytest.fixture
def daemons_json(nats_server: NatsServer, tmp_path: Path) -> Iterator[Daemons]:
    daemons = Daemons(
        tmp_path,
        url_with_password(nats_server),
        controller_args=["--log-format", "json", "--log-level", "DEBUG"],
        agent_args=["--log-level", "DEBUG"],
        agent_env={"NEXEC_LOG_FORMAT": "json"},  # the setting from the environment
    )
    yield daemons
    daemons.stop()


def parsed(lines: list[str]) -> list[dict[str, Any]]:
    """Each line as a JSON object with the four keys every line has."""
    objects = []
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        assert {"time", "level", "logger", "message"} <= obj.keys(), line
        assert RFC3339_UTC.match(obj["time"]), line
        objects.append(obj)
    return objects


def summary_of(objects: list[dict[str, Any]], what: str) -> dict[str, Any]:
    [summary] = [obj for obj in objects if obj["message"].startswith(f"{what}: ")]
    return summary


async def test_json_logs_of_both_daemons(daemons_json: Daemons) -> None:
    daemons = daemons_json
    status, answer = await daemons.post(EXEC, {"command": "true"}, daemons.key)
    assert status == 202, answer
    job_id = answer["job_id"]
    status, refused = await daemons.post(EXEC, {"command": "id"}, daemons.key)
    assert (status, refused["results"][0]["status"]) == (202, "failed")
    status, _ = await daemons.post(
        "/node/h1/command/exec", {"command": "true"}, "not-" + daemons.key
    )
    assert status == 401
    await asyncio.to_thread(daemons.stop)

    controller = parsed(daemons.lines("controller"))
    agent = parsed(daemons.lines("agent"))
    assert all(obj["hostname"] == "h1" for obj in agent)
    for objects in (controller, agent):
        of_job = [obj for obj in objects if obj.get("job_id") == job_id]
        assert of_job, objects
        assert all(obj["job_id"] == job_id for obj in objects if job_id in obj["message"])
    [agent_done] = [obj for obj in agent if obj.get("job_id") == job_id and "status" in obj]
    assert agent_done["status"] == "completed"
    assert isinstance(agent_done["duration_ms"], int)
    [host_done] = [obj for obj in controller if obj.get("job_id") == job_id and "status" in obj]
    assert (host_done["hostname"], host_done["status"]) == ("h1", "completed")
    assert any(obj.get("key_name") == "ops" for obj in controller)
    refusal = refused["job_id"]
    assert any(obj.get("job_id") == refusal and obj.get("status") == "failed" for obj in agent)

    counts = summary_of(controller, "nexec-controller stopped")
    assert (counts["served"], counts["in_flight"]) == (3, 0)
    assert counts["refused_while_draining"] == counts["registry_entries_refused"] == 0
    counts = summary_of(agent, "nexec-agentd stopped")
    assert (counts["received"], counts["started"], counts["refused"]) == (2, 1, 1)
    assert counts["duplicates"] == counts["records_lost"] == 0

    output = daemons.whole_output()
    assert daemons.key not in output
    assert PASSWORD not in output


async def test_the_text_format_stays_and_shows_no_password(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    daemons = Daemons(tmp_path, url_with_password(nats_server), [], [], {})
    try:
        status, _ = await daemons.post(EXEC, {"command": "true"}, daemons.key)
        assert status == 202
    finally:
        await asyncio.to_thread(daemons.stop)
    for name in ("controller", "agent"):
        lines = daemons.lines(name)
        assert all(TEXT_LINE.match(line) for line in lines), lines
    assert any(
        line.endswith(
            " INFO nexec.controller: nexec-controller stopped: served=1 in_flight=0 "
            "refused_while_draining=0 registry_entries_refused=0"
        )
        for line in daemons.lines("controller")
    )
    assert any(
        re.search(r" INFO nexec\.agentd: nexec-agentd stopped: hostname=h1 received=1 started=1 "
                  r"duplicates=0 refused=0 replies_lost=0 records_retried=0 records_lost=0$", line)
        for line in daemons.lines("agent")
    )  # fmt: skip
    output = daemons.whole_output()
    assert daemons.key not in output
    assert PASSWORD not in output


def test_a_json_line_is_one_line_with_the_traceback_as_exc() -> None:
    record = logging.LogRecord("nexec.test", logging.ERROR, __file__, 1, "job %r: %s", None, None)
    record.args = ("j1", "bad\nline")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    for name, value in log_fields(job_id="j1", status="failed", duration_ms=5).items():
        setattr(record, name, value)
    line = JsonFormatter({"hostname": "h1"}).format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["message"] == "job 'j1': bad\nline"
    assert (obj["job_id"], obj["status"], obj["duration_ms"], obj["hostname"]) == (
        "j1",
        "failed",
        5,
        "h1",
    )
    assert obj["exc"].startswith("Traceback") and "RuntimeError: boom" in obj["exc"]


def test_warnings_and_uncaught_exceptions_are_json_lines_too() -> None:
    code = (
        "import warnings; from runtime.logs import configure_logging; "
        "configure_logging('INFO', 'json', {'hostname': 'h1'}); "
        "warnings.warn('careful'); raise RuntimeError('boom')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    warned, crashed = parsed(done.stderr.splitlines())
    assert (warned["level"], warned["logger"]) == ("WARNING", "py.warnings")
    assert "careful" in warned["message"]
    assert (crashed["level"], crashed["message"], crashed["hostname"]) == (
        "CRITICAL",
        "uncaught exception",
        "h1",
    )
    assert "RuntimeError: boom" in crashed["exc"]


async def test_an_exception_in_a_message_callback_is_logged_with_its_traceback(
    controller: Controller, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-py hands an exception raised by a subscription's callback to the
    connection's error callback: a bug, logged at ERROR with ``exc`` (its traceback),
    not as a one-line warning like a NATS error."""
    client = controller.app[NATS_LINK].client
    failed = asyncio.Event()

    async def broken(msg: Msg) -> None:
        failed.set()
        raise KeyError("a bug in a callback")

    await client.subscribe("test.broken", cb=broken)
    await client.publish("test.broken", b"")
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        await failed.wait()
    await client.flush()  # the callback's task ran on: its error is logged by now
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is KeyError]
    assert record.levelno == logging.ERROR
    line = json.loads(JsonFormatter().format(record))
    assert "a bug in a callback" in line["exc"]


async def test_no_secret_in_any_line_at_debug(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both daemons at DEBUG, in both formats, with a NATS user and password from the
    environment, a signing seed and a trusted signer: after a signed job, a refused
    one and a wrong key, no line holds the password, the seed or an API key."""
    seed_file = tmp_path / "controller.nk"
    signer = write_seed_file(seed_file)
    seed = seed_file.read_text().strip()
    monkeypatch.setenv("NEXEC_NATS_USER", "logs-user")
    monkeypatch.setenv("NEXEC_NATS_PASSWORD", PASSWORD)
    for log_format in ("json", "text"):
        (tmp_path / log_format).mkdir()
        daemons = Daemons(
            tmp_path / log_format,
            nats_server.url,
            controller_args=["--log-level", "DEBUG", "--log-format", log_format,
                             "--job-signing-key-file", str(seed_file)],
            agent_args=["--log-level", "DEBUG", "--log-format", log_format,
                        "--trusted-signer", signer.public_key],
            agent_env={},
        )  # fmt: skip
        try:
            assert (await daemons.post(EXEC, {"command": "true"}, daemons.key))[0] == 202
            assert (await daemons.post(EXEC, {"command": "id"}, daemons.key))[0] == 202
            assert (await daemons.post(EXEC, {"command": "true"}, "x" + daemons.key))[0] == 401
        finally:
            await asyncio.to_thread(daemons.stop)
        output = daemons.whole_output()
        assert "DEBUG" in output
        for secret in (PASSWORD, seed, seed[2:30], daemons.key):
            assert secret not in output, log_format
