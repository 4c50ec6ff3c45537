"""HTTP at its edges: clients that leave or stall, too many connections, malformed
requests, bodies that are not JSON, duplicate keys. Raw sockets where aiohttp's
client would not send such a request."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from controller.appkeys import CONFIG
from tests.helpers import Controller, Fifo, LiveAgent, MakeController

EXEC_PATH = "/node/agent-1/command/exec"
SHELL_PATH = "/node/agent-1/command/shell"
BOUND_S = 20.0  # a bound on a wait that should end far sooner; never a synchronisation


def port_of(controller: Controller) -> int:
    return int(controller.url.rpartition(":")[2])


async def connect(controller: Controller) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port_of(controller))


def head(method: str, path: str, *lines: str) -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/1.1", "Host: nexec.test", *lines, "", ""]).encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One answer: its status, its headers (lower-case names) and its body."""
    async with asyncio.timeout(BOUND_S):
        status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
        headers = {}
        for line in filter(None, header_lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def raw_exchange(controller: Controller, request: bytes) -> tuple[int, dict[str, str], Any]:
    """Send ``request`` on a new connection; the answer, its body decoded as JSON."""
    reader, writer = await connect(controller)
    writer.write(request)
    status, headers, body = await read_answer(reader)
    writer.close()
    return status, headers, json.loads(body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closed the connection, sending nothing more."""
    async with asyncio.timeout(BOUND_S):
        return await reader.read() == b""


def assert_error_shape(body: Any, code: int, *fragments: str) -> None:
    assert set(body) == {"error", "details", "code"}, body
    assert body["code"] == code, body
    for fragment in fragments:
        assert fragment in body["details"], body["details"]


async def test_a_client_leaving_mid_body_is_no_500_and_no_traceback(
    controller: Controller, nc: Client, live_agent: LiveAgent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    audit = await nc.jetstream().subscribe(
        controller.app[CONFIG].subjects.audit_record(), ordered_consumer=True
    )
    reader, writer = await connect(controller)
    writer.write(
        head("POST", EXEC_PATH, f"Authorization: Bearer {controller.api_key}",
             "Content-Type: application/json", "Content-Length: 1000", "Expect: 100-continue")
    )  # fmt: skip
    async with asyncio.timeout(BOUND_S):  # the handler is reading the body now
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(b'{"command"')
    await writer.drain()
    writer.close()

    record = json.loads((await audit.next_msg(timeout=BOUND_S)).data)
    assert (record["path"], record["status"], record["outcome"]) == (
        EXEC_PATH,
        499,
        "client disconnected",
    )
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert any("disconnected" in r.getMessage() for r in caplog.records)
    await live_agent(controller, "agent-1")
    assert (await controller.exec("agent-1", {"command": "true"})).status == 202


class LogWatch(logging.Handler):
    """Every record logged while installed; ``seen`` is set by the first that matches."""

    def __init__(self, matches: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__()
        self.matches = matches
        self.records: list[logging.LogRecord] = []
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.matches(record):
            self.seen.set()


async def test_a_client_leaving_a_live_output_stream_is_no_500(
    controller: Controller,
    live_agent: LiveAgent,
    started: Fifo,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await live_agent(controller, "agent-1")
    gate = tmp_path / "gate"
    gate.mkdir()
    script = (
        f"echo first; echo go > {started.path}; while [ -d {gate} ]; do sleep 0.05; done; echo last"
    )
    submitted = await controller.request(
        "POST", f"{EXEC_PATH}?wait=false", json={"command": "sh", "args": ["-c", script]}
    )
    job_id = submitted.body["job_id"]
    await started.lines(1)
    reader, writer = await connect(controller)
    writer.write(head("GET", f"/job/{job_id}/output", f"Authorization: Bearer {controller.api_key}",
                      "Accept: application/x-ndjson"))  # fmt: skip
    async with asyncio.timeout(BOUND_S):
        received = b""
        while b"first" not in received:
            received += await reader.read(4096)
    writer.close()
    watch = LogWatch(lambda r: "disconnected" in r.getMessage() or r.levelno >= logging.ERROR)
    caplog.set_level(logging.INFO)
    logging.getLogger().addHandler(watch)
    try:
        gate.rmdir()  # "last" is written to a connection that is gone
        await asyncio.wait_for(watch.seen.wait(), BOUND_S)
    finally:
        logging.getLogger().removeHandler(watch)
    assert not [r for r in watch.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_stalled_headers_are_dropped_while_others_are_served(
    make_controller: MakeController,
) -> None:
    controller = await make_controller(http_read_timeout_s=0.5)
    reader, writer = await connect(controller)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: nexec.test\r\n")  # and nothing more
    assert (await controller.request("GET", "/healthz")).status == 200
    assert await closed_by_server(reader)
    writer.close()


async def test_a_stalled_body_gets_408_and_the_connection_closes(
    make_controller: MakeController,
) -> None:
    controller = await make_controller(http_read_timeout_s=0.5)
    reader, writer = await connect(controller)
    writer.write(
        head("POST", EXEC_PATH, f"Authorization: Bearer {controller.api_key}",
             "Content-Type: application/json", "Content-Length: 1000") + b'{"command"'
    )  # fmt: skip
    status, headers, body = await read_answer(reader)
    assert status == 408
    assert headers["connection"] == "close"
    assert_error_shape(json.loads(body), 408, "did not arrive within 0.5s")
    writer.close()


async def test_connections_beyond_the_cap_get_503_but_healthz_answers(
    make_controller: MakeController,
) -> None:
    controller = await make_controller(http_max_connections=3)
    auth = f"Authorization: Bearer {controller.api_key}"
    admitted = [await connect(controller) for _ in range(3)]
    for reader, writer in admitted:  # answered: the server holds each connection now
        writer.write(head("GET", "/healthz"))
        assert (await read_answer(reader))[0] == 200

    status, headers, body = await raw_exchange(controller, head("GET", "/node", auth))
    assert status == 503
    assert headers["connection"] == "close"
    assert_error_shape(body, 503, "at most 3 connections")
    assert body["error"] == "too many connections"
    assert (await raw_exchange(controller, head("GET", "/healthz")))[0] == 200
    for reader, writer in admitted:  # admitted connections are still served
        writer.write(head("GET", "/node", auth))
        assert (await read_answer(reader))[0] == 200

    reader, writer = admitted[0]
    writer.write(head("GET", "/healthz", "Connection: close"))
    await read_answer(reader)
    assert await closed_by_server(reader)  # the server's side is gone: its slot is free
    status, _, body = await raw_exchange(controller, head("GET", "/node", auth))
    assert status == 200, body
    for _, writer in admitted:
        writer.close()


@pytest.mark.parametrize("path", [EXEC_PATH, SHELL_PATH])
@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        ("text/plain", "not 'text/plain'"),
        ("application/x-www-form-urlencoded", "not 'application/x-www-form-urlencoded'"),
        ("multipart/form-data; boundary=x", "not 'multipart/form-data'"),
        (None, "the request has none"),
    ],
)
async def test_a_body_not_sent_as_json_is_415(
    controller: Controller, path: str, content_type: str | None, fragment: str
) -> None:
    lines = [f"Authorization: Bearer {controller.api_key}", "Content-Length: 18"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    request = head("POST", path, *lines) + b'{"command": "id"} '
    status, _, body = await raw_exchange(controller, request)
    assert status == 415, body
    assert_error_shape(body, 415, "application/json", fragment)


async def test_form_data_is_415_and_json_with_a_charset_runs(
    controller: Controller, live_agent: LiveAgent
) -> None:
    url = controller.url + EXEC_PATH
    auth = {"Authorization": f"Bearer {controller.api_key}"}
    async with controller.session.post(url, data={"command": "id"}, headers=auth) as response:
        assert response.status == 415
        assert_error_shape(await response.json(), 415, "x-www-form-urlencoded")
    await live_agent(controller, "agent-1")
    charset = {**auth, "Content-Type": "application/json; charset=utf-8"}
    async with controller.session.post(url, data=b'{"command": "true"}', headers=charset) as ok:
        assert ok.status == 202


async def test_415_comes_after_the_permission_check(make_controller: MakeController) -> None:
    controller = await make_controller(keys={"reader": (["job:read"], [])})
    response = await controller.request(
        "POST", EXEC_PATH, data=b"{}", key=controller.extra_keys["reader"],
        headers={"Content-Type": "text/plain"},
    )  # fmt: skip
    assert response.status == 403


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        (EXEC_PATH, b'{"command":"id","command":"/bin/true"}', "command"),
        (EXEC_PATH, b'{"command":"id","env":{"A":"1","B":"2","A":"3"}}', "A"),
        (SHELL_PATH, b'{"command":"id","timeout":5,"timeout":6}', "timeout"),
    ],
)
async def test_duplicate_keys_are_400_naming_the_key(
    controller: Controller, path: str, body: bytes, key: str
) -> None:
    response = await controller.request("POST", path, data=body)
    assert response.status == 400
    assert_error_shape(response.body, 400, f"duplicate key '{key}'")


async def test_405_says_which_methods_are_allowed(controller: Controller) -> None:
    async with controller.session.get(controller.url + EXEC_PATH) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert_error_shape(await response.json(), 405, f"GET {EXEC_PATH}")


@pytest.mark.parametrize(
    ("request_bytes", "fragment"),
    [
        (b"GE T / HTTP/1.1\r\nHost: x\r\n\r\n", "Invalid method"),
        (b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", "Invalid header"),
        (b"GET /healthz HTTP/1.1\r\nHost: " + b"x" * 9000 + b"\r\n\r\n", ""),
    ],
)
async def test_requests_aiohttp_cannot_parse_get_400_in_the_error_shape(
    controller: Controller, request_bytes: bytes, fragment: str
) -> None:
    status, headers, body = await raw_exchange(controller, request_bytes)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert_error_shape(body, 400, "malformed HTTP", fragment)


async def test_an_unknown_expectation_gets_417_in_the_error_shape(controller: Controller) -> None:
    request = head("POST", EXEC_PATH, "Expect: something", "Content-Length: 0")
    status, _, body = await raw_exchange(controller, request)
    assert status == 417
    assert_error_shape(body, 417, f"POST {EXEC_PATH}")


async def test_an_http_0_9_request_line_is_refused(controller: Controller) -> None:
    reader, writer = await connect(controller)
    writer.write(b"GET /healthz\r\n\r\n")
    async with asyncio.timeout(BOUND_S):
        answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert_error_shape(body, 400, "no HTTP version")
