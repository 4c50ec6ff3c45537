"""The agent's registry entry: a heartbeat every interval, deleted when the agent leaves.

The agent subscribes to its job subjects first and sends the first heartbeat
(:meth:`Heartbeats.beat`) before it says it is ready: a controller expects only
agents in the registry, so an agent in it must already hear its jobs. Then
:meth:`Heartbeats.start` keeps the entry alive; :meth:`Heartbeats.stop` ends the
heartbeats and deletes the entry, first of all when the agent stops, so that new
requests no longer expect it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable

import nats.errors

from agentd.config import AgentConfig
from runtime.jetstream import KV_DELETE_HEADERS
from runtime.streamwriter import MSG_TTL_HEADER, StreamWriter
from schemas import __version__
from schemas.limits import MISSED_HEARTBEATS_BEFORE_EXPIRY
from schemas.messages import Heartbeat, encode

log = logging.getLogger("nexec.agentd")

HEARTBEAT_RETRY_S = 1.0
"""Seconds before a heartbeat that JetStream did not take is tried again."""


class Heartbeats:
    """Writes ``config.hostname``'s registry entry, with a TTL of three intervals."""

    def __init__(
        self,
        records: StreamWriter,
        config: AgentConfig,
        *,
        instance_id: str,
        started_at: float,
        jobs_running: Callable[[], int],
    ) -> None:
        self._records = records
        self._config = config
        self._subject = config.subjects.registry_entry(config.hostname)
        self._started_at = started_at
        self._jobs_running = jobs_running
        self._instance_id = instance_id
        self._task: asyncio.Task[None] | None = None
        self._beating = False

    def start(self, recorded: bool) -> None:
        """Heartbeat every interval; ``recorded``: whether the last :meth:`beat` was taken."""
        self._beating = True
        self._task = asyncio.create_task(self._loop(recorded), name="heartbeats")

    async def stop(self) -> None:
        """End the heartbeats, then delete the registry entry. Each step is bounded by
        ``connect_timeout_s``; a failure is logged, never raised. Safe to call twice."""
        if not self._beating:
            return
        self._beating = False
        if self._task is not None:
            # Bounded: nats-py can swallow a cancel that meets a reply; the loop
            # then ends on the flag instead.
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self._config.connect_timeout_s)
        await self._leave()

    async def _loop(self, recorded: bool) -> None:
        interval_s = self._config.heartbeat_interval_s
        while self._beating:
            # After a failure, try again soon: the entry may be about to expire.
            retry_s = HEARTBEAT_RETRY_S if not recorded else interval_s
            await asyncio.sleep(min(retry_s, interval_s))
            if self._beating:
                recorded = await self.beat()

    async def beat(self) -> bool:
        """Set the registry entry now. Returns False (and logs) when JetStream did not
        take it within ``connect_timeout_s``; never raises."""
        config = self._config
        heartbeat = Heartbeat(
            hostname=config.hostname,
            instance_id=self._instance_id,
            labels=dict(config.labels),
            version=__version__,
            started_at=self._started_at,
            sent_at=time.time(),
            interval_s=config.heartbeat_interval_s,
            jobs_running=self._jobs_running(),
            load_avg=list(os.getloadavg()),
        )
        try:
            await self._records.write(
                self._subject,
                encode(heartbeat),
                headers={
                    MSG_TTL_HEADER: str(
                        math.ceil(MISSED_HEARTBEATS_BEFORE_EXPIRY * config.heartbeat_interval_s)
                    )
                },
                timeout_s=config.connect_timeout_s,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("heartbeat not recorded: %s", exc or type(exc).__name__)
            return False
        return True

    async def _leave(self) -> None:
        try:
            await self._records.write(
                self._subject,
                b"",
                headers=KV_DELETE_HEADERS,
                timeout_s=self._config.connect_timeout_s,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("registry entry not removed: %s", exc or type(exc).__name__)
