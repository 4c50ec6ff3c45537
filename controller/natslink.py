"""The controller's one NATS connection, made in the background and kept forever.

The HTTP server starts at once; until NATS answers, requests that need it get
503 and ``/healthz`` says so. Once connected, a probe makes one bounded JetStream
request every interval: a server that stopped answering while its TCP connection
stays open (frozen, overloaded) is noticed within the interval plus the timeout,
long before the client's own pings would notice it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats.errors
from nats.aio.client import Client

from controller.errors import NatsUnavailable
from runtime.connection import NatsErrorLog, close_within, drain_or_close
from runtime.retry import backoff_s
from runtime.settings import server_urls, urls_shown

log = logging.getLogger("nexec.controller.nats")

SETUP_RETRY_MAX_S = 10.0
"""The longest wait between setup tries (:func:`runtime.retry.backoff_s`)."""

Probe = Callable[[], Awaitable[object]]
"""One JetStream round trip; raises nats-py's errors when it fails."""


class LinkState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"


class NatsLink:
    """Connects with unlimited retries, then runs the setup given to :meth:`start` until
    it succeeds (it must be safe to run again after a failure)."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        connect_timeout_s: float,
        options: dict[str, Any] | None = None,
        probe_interval_s: float = 2.0,
        probe_timeout_s: float = 3.0,
    ) -> None:
        """``options``: extra ``connect`` arguments (credentials, TLS). The probe given to
        :meth:`start` runs every ``probe_interval_s`` and fails after ``probe_timeout_s``."""
        self.client = Client()
        self._url = url
        self._shown = urls_shown(url)  # what the logs show: no credentials
        self.errors = NatsErrorLog(log, self._shown)
        """Logs (and counts the slow-consumer drops of) the connection's errors."""
        self._name = name
        self._connect_timeout_s = connect_timeout_s
        self._options = options or {}
        self._on_connected: Callable[[Client], Awaitable[None]] | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._connect_called = False
        self._closing = False
        self._probe_interval_s = probe_interval_s
        self._probe_timeout_s = probe_timeout_s
        self._probe_task: asyncio.Task[None] | None = None
        self.probe_failure: str | None = None
        """Why the last probe failed; None when it succeeded (or none ran yet)."""
        self.ready = asyncio.Event()
        """Set once connected and ``on_connected`` has run."""
        self._when_lost: list[Callable[[], None]] = []
        self._when_back: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._reactions: set[asyncio.Task[None]] = set()
        self.disconnected = asyncio.Event()
        """Set while the connection is down after having been up."""
        self.setup_failed = asyncio.Event()
        """Set once a setup attempt failed (it is retried)."""
        self.setup_error: str | None = None
        """Why the last setup attempt failed; None once one succeeded."""

    @property
    def state(self) -> LinkState:
        if self.client.is_closed:
            return LinkState.CLOSED
        if self.client.is_connected and self.ready.is_set():
            return LinkState.CONNECTED
        return LinkState.DISCONNECTED if self.ready.is_set() else LinkState.CONNECTING

    def start(
        self, on_connected: Callable[[Client], Awaitable[None]], probe: Probe | None = None
    ) -> None:
        """Connect in the background; ``on_connected`` sets up subscriptions and streams.
        Once that succeeded, ``probe`` runs every interval while connected."""
        self._on_connected = on_connected
        self._connect_task = asyncio.create_task(self._connect())
        self._connect_task.add_done_callback(self._log_failure)
        if probe is not None:
            self._probe_task = asyncio.create_task(self._probe_loop(probe), name="nats probe")
            self._probe_task.add_done_callback(self._log_failure)

    async def _probe_loop(self, probe: Probe) -> None:
        await self.ready.wait()
        while not self._closing:  # also ends a loop whose cancel a timeout swallowed
            if self.client.is_connected:
                await self._probe_once(probe)
            await asyncio.sleep(self._probe_interval_s)

    async def _probe_once(self, probe: Probe) -> None:
        """Run ``probe`` once within the timeout; set or clear :attr:`probe_failure`."""
        failure: str | None = None
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                await probe()
        except TimeoutError:
            failure = f"JetStream did not answer within {self._probe_timeout_s:g} s"
        except nats.errors.Error as exc:
            failure = f"JetStream request failed: {exc or type(exc).__name__}"
        if failure != self.probe_failure:
            log_at = logging.INFO if failure is None else logging.WARNING
            log.log(log_at, "NATS probe: %s", failure or "JetStream answers again")
        self.probe_failure = failure

    def _log_failure(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("NATS setup failed; requests get 503: %s", task.exception())

    async def _connect(self) -> None:
        self._connect_called = True
        await self.client.connect(
            servers=server_urls(self._url),
            name=self._name,
            connect_timeout=max(1, round(self._connect_timeout_s)),
            max_reconnect_attempts=-1,
            error_cb=self.errors.on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            **self._options,
        )
        assert self._on_connected is not None
        for delay_s in backoff_s(SETUP_RETRY_MAX_S):
            try:
                await self._on_connected(self.client)
                await self.client.flush(timeout=max(1, round(self._connect_timeout_s)))
                break
            except (nats.errors.Error, NatsUnavailable, TimeoutError) as exc:
                if self._closing or self.client.is_closed:
                    return
                self.setup_failed.set()
                self.setup_error = str(exc) or type(exc).__name__
                # JetStream may not be ready yet (a cluster electing its leader,
                # a server restarting): try again rather than 503 until a restart.
                log.warning(
                    "NATS setup failed, requests get 503; retrying in %g s: %s",
                    delay_s,
                    exc or type(exc).__name__,
                )
                await asyncio.sleep(delay_s)
        self.setup_error = None
        self.ready.set()
        log.info("NATS connected: %s", self._shown)

    async def close(self) -> None:
        """Stop probing and connecting, or drain the connection. Safe to call twice."""
        self._closing = True
        if self._probe_task is not None:
            self._probe_task.cancel()
            await asyncio.wait({self._probe_task}, timeout=self._connect_timeout_s)
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
            # nats-py's retry loop can swallow a cancel: never wait for it unbounded.
            _, still_running = await asyncio.wait(
                {self._connect_task}, timeout=self._connect_timeout_s
            )
            if still_running:
                log.warning("NATS connection attempts did not stop; closing the client")
        if self.client.is_connected:
            await drain_or_close(self.client, self._connect_timeout_s)
        elif self._connect_called:
            await close_within(self.client, self._connect_timeout_s)

    def on_connection_change(
        self, lost: Callable[[], None], back: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Call ``lost()`` when the connection drops, and run ``back()`` in its own
        task when it is made again (after the setup, if it was lost during it)."""
        self._when_lost.append(lost)
        self._when_back.append(back)

    async def _on_disconnected(self) -> None:
        if self.ready.is_set() and not self._closing:
            self.disconnected.set()
            log.warning("NATS disconnected: %s", self._shown)
            for lost in self._when_lost:
                lost()

    async def _on_reconnected(self) -> None:
        self.disconnected.clear()
        log.info("NATS reconnected: %s", self._shown)
        if self._closing:
            return
        for back in self._when_back:
            task = asyncio.create_task(back())
            self._reactions.add(task)
            task.add_done_callback(self._reactions.discard)
