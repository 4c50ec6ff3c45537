"""Keeping every stream and bucket the controller needs in place.

A nats-server that lost its store, or an operator's mistake, can take a stream or a
bucket away under a running system. Every ``state_check_interval_s`` the keeper asks
JetStream for each one (one ``STREAM.INFO`` each); one that is missing is made again,
and whoever reads it is told to start over (the result consumer, the registry watch).
Agents never make streams or buckets: they retry their writes until it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from controller.errors import NatsUnavailable

log = logging.getLogger("nexec.controller.state")

Remake = Callable[[], Awaitable[None]]
STOP_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class KeptStream:
    name: str
    """The stream's name (a bucket's is ``KV_<bucket>``)."""
    remake: Remake
    """Makes it again, and has its readers start over."""


class StateKeeper:
    """Checks the kept streams every ``interval_s`` and remakes the missing ones."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._kept: list[KeptStream] = []
        self._task: asyncio.Task[None] | None = None
        self.remade = 0
        """Streams and buckets made again since this controller started."""

    def keep(self, name: str, remake: Remake) -> None:
        self._kept.append(KeptStream(name, remake))

    def start(self, js: JetStreamContext) -> None:
        """Start checking (once; later calls do nothing)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(js), name="state keeper")

    async def _run(self, js: JetStreamContext) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            for kept in self._kept:
                await self._check(js, kept)

    async def _check(self, js: JetStreamContext, kept: KeptStream) -> None:
        """Remake ``kept`` if JetStream says it does not exist; any other failure
        (NATS down, JetStream not answering) is for the next round and ``/healthz``."""
        try:
            await js.stream_info(kept.name)
            return
        except nats.js.errors.NotFoundError:
            pass
        except (nats.errors.Error, TimeoutError):
            return
        log.warning("stream %s is missing: making it again", kept.name)
        try:
            await kept.remake()
        except (nats.errors.Error, NatsUnavailable, TimeoutError) as exc:
            log.warning("stream %s not made again yet: %s", kept.name, exc or type(exc).__name__)
            return
        self.remade += 1

    async def stop(self) -> None:
        """Stop checking. Bounded: nats-py can swallow a cancel that meets a reply."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self._interval_s + STOP_WAIT_S)
