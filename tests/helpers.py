"""What the tests share that is not a fixture: the running things the fixtures hand
out, their factory types, and small waits. Fixtures live in ``conftest.py`` and
import from here; tests import from here, never from ``conftest.py``.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentd.agent import Agent
from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import REGISTRY
from controller.registry.view import Registry
from nexec.dev.processes import ManagedProcess, start_nats_server
from runtime.streamwriter import is_no_responders
from schemas.subjects import Subjects

STARTUP_TIMEOUT_S = 20.0
RECONNECT_WAIT_S = 0.1
"""The test agents' and controllers' pause before reconnecting to a NATS server they
lost (``reconnect_wait_s``): a test that restarts one waits that, not nats-py's 2 s."""
RESULTS_HEARTBEAT_S = 0.2
"""A controller's ``results_heartbeat_s`` in tests that restart NATS: its results
consumer, gone with the server, is made again 2 to 4 of them later, not seconds later."""
AGENT_READY_RE = re.compile(r"nexec-agentd ready")


@dataclass
class NatsServer:
    process: ManagedProcess
    url: str

    def stop(self) -> None:
        self.process.stop()


class RestartableNats:
    """A nats-server on a free loopback port with its JetStream store in ``store``,
    which a test stops (by any signal) and starts again on the same port and store."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.process, self.url = start_nats_server(store)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self, signum: int = signal.SIGTERM) -> None:
        self.process.stop(signum=signum)

    def start_again(self) -> None:
        """Start it again on its port and store (once stopped)."""
        self.process, _ = start_nats_server(self.store, port=self.port)


@dataclass
class Response:
    status: int
    body: Any


@dataclass
class Controller:
    """A running controller and an HTTP client with a key that may do everything."""

    url: str
    app: web.Application
    runner: web.AppRunner
    session: aiohttp.ClientSession
    api_key: str
    keys_file: Path
    extra_keys: dict[str, str] = field(default_factory=dict)

    async def close(self) -> None:
        """Stop this controller as a restart or a crash of its process would."""
        await self.runner.cleanup()

    async def crash(self) -> None:
        """Stop this controller as a crash of its process would, open streams included:
        every connection is cut at once and its handler cancelled without the grace
        ``close`` gives it (a live output stream would hold the stop for aiohttp's
        shutdown timeout). The listener closes first, so no client reconnects in between."""
        for site in list(self.runner.sites):
            await site.stop()
        server = self.runner.server
        if server is not None:
            for handler in server.connections:
                if handler.transport is not None:
                    handler.transport.abort()
            await server.shutdown(0.01)  # 0 would mean no limit
        await self.runner.cleanup()

    @property
    def registry(self) -> Registry:
        return self.app[REGISTRY]

    async def wait_for_agents(self, *hostnames: str) -> None:
        """Until every named agent is in this controller's registry.

        Raises:
            TimeoutError: not within ``STARTUP_TIMEOUT_S``.
        """
        await self.registry.wait_until(
            lambda registry: set(hostnames).issubset(hb.hostname for hb in registry.live()),
            STARTUP_TIMEOUT_S,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        all_headers = {"Authorization": f"Bearer {key or self.api_key}"}
        if data is not None:
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        async with self.session.request(
            method, self.url + path, json=json, data=data, headers=all_headers
        ) as response:
            body = None if response.status == 204 else await response.json()
            return Response(response.status, body)

    async def exec(self, target: str, body: Any, *, key: str | None = None) -> Response:
        return await self.request("POST", f"/node/{target}/command/exec", json=body, key=key)


MakeAgent = Callable[..., Awaitable[Agent]]
"""``await make_agent("web1", labels={"role": "web"}, executor=None, **settings)``"""

LiveAgent = Callable[..., Awaitable[Agent]]
"""``await live_agent(controller, "web1", labels=..., **settings)``: started and listed."""

SpawnAgent = Callable[..., ManagedProcess]
"""``spawn_agent("web1", *extra_args)``: a ``nexec-agentd`` process past its ready line."""

LiveAgentProcess = Callable[..., Awaitable[ManagedProcess]]
"""``await live_agent_process(controller, "web1", *extra_args)``: spawned and listed."""

MakeController = Callable[..., Awaitable[Controller]]
"""``await make_controller(nats_url=None, wait_for_nats=True, keys=None, restart_of=None,
**settings)``"""


async def recorded_result(nc: Client, job_id: str, hostname: str) -> dict[str, Any]:
    """The host's result of the job as the results stream holds it, once it is there.

    Raises:
        nats.errors.TimeoutError: it is not there within 20 s.
    """
    subscription = await nc.jetstream().subscribe(
        Subjects().result_record(job_id, hostname), ordered_consumer=True
    )
    message = await subscription.next_msg(timeout=20)
    await subscription.unsubscribe()
    result: dict[str, Any] = json.loads(message.data)
    return result


def gated(gate: Path) -> str:
    """A shell line that waits until the test removes the directory ``gate``."""
    return f"while [ -d {gate} ]; do sleep 0.05; done"


def told_then_gated(started: Fifo, gate: Path) -> str:
    """A shell line that writes the host's name (``$NEXEC_HOST``) into ``started``,
    then waits until the test removes the directory ``gate``."""
    return f'echo "$NEXEC_HOST" > {started.path}; {gated(gate)}'


class Fifo:
    """A named pipe that commands write lines into and the test reads, in the event
    loop and with a bound, so a test never blocks a thread forever.

    Opened read-write: the test's reader never sees end-of-file between two
    writers, and no writer ever meets a pipe without a reader.
    """

    def __init__(self, path: Path, reader: asyncio.StreamReader, transport: Any) -> None:
        self.path = path
        self._reader = reader
        self._transport = transport

    @classmethod
    async def open(cls, path: Path) -> Fifo:
        os.mkfifo(path)
        pipe = os.fdopen(os.open(path, os.O_RDWR | os.O_NONBLOCK), "rb", buffering=0)
        reader = asyncio.StreamReader()
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        return cls(path, reader, transport)

    async def lines(self, count: int, timeout_s: float = STARTUP_TIMEOUT_S) -> list[str]:
        """The next ``count`` lines written, from any writers, in the order they came.

        Raises:
            TimeoutError: fewer came within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            return [(await self._reader.readline()).decode().rstrip("\n") for _ in range(count)]

    def close(self) -> None:
        self._transport.close()


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    """True once ``pid`` no longer runs (gone, or a zombie nobody reaps), else False
    after ``timeout_s``. A process that is not our child offers nothing to wait on,
    so this polls /proc, bounded. It blocks: an async test awaits :func:`gone`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # a retry delay inside a bounded poll, not a synchronisation


async def gone(pid: int, timeout_s: float = 10.0) -> bool:
    """:func:`wait_gone` for an async test: the event loop runs on meanwhile."""
    return await asyncio.to_thread(wait_gone, pid, timeout_s)


SERVICE_QUIET_S = 0.3
"""After the expected answers to a discovery request, how long one more is waited
for (to show there is none): a bound on a wait for nothing, never a synchronisation."""


async def until(condition: Callable[[], bool], timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Poll ``condition`` (a count another task of this loop keeps) until it holds.

    Raises:
        TimeoutError: not within ``timeout_s``.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def service_replies(
    nc: Client, subject: str, *, expected: int, timeout_s: float = STARTUP_TIMEOUT_S
) -> list[dict[str, Any]]:
    """Every answer to one ADR-32 discovery request (``$SRV.PING...``), as ``nats micro``
    collects them: a request on a fresh inbox, answers gathered until ``expected``
    arrived (within ``timeout_s``) and then, for :data:`SERVICE_QUIET_S`, any more.

    Raises:
        TimeoutError: fewer than ``expected`` answers came within ``timeout_s``.
        AssertionError: nobody answers on ``subject`` (NATS: no responders).
    """
    inbox = nc.new_inbox()
    answers: asyncio.Queue[Msg] = asyncio.Queue()
    subscription = await nc.subscribe(inbox, cb=answers.put)

    async def next_answer() -> dict[str, Any]:
        msg = await answers.get()
        assert not is_no_responders(msg), f"no service answers on {subject}"
        answer: dict[str, Any] = json.loads(msg.data)
        return answer

    try:
        await nc.publish(subject, b"", reply=inbox)
        replies = []
        async with asyncio.timeout(timeout_s):
            while len(replies) < expected:
                replies.append(await next_answer())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SERVICE_QUIET_S):
                while True:
                    replies.append(await next_answer())
        return replies
    finally:
        await subscription.unsubscribe()


async def shell_fleet(
    controller: Controller, make_agent: MakeAgent, hosts: tuple[str, ...]
) -> None:
    """Agents ``hosts`` (label role:web, shell allowed), each with its name in
    ``$NEXEC_HOST``, live in ``controller``'s registry."""
    for host in hosts:
        await make_agent(
            host,
            labels={"role": "web"},
            allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )
    await controller.wait_for_agents(*hosts)


def ran_on(log: Path) -> list[str]:
    """The hosts that appended their name to ``log``, in the order they did."""
    return log.read_text().split() if log.exists() else []
