"""The subjects an agent hears its jobs on, and the end of hearing them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentd.config import AgentConfig
from runtime.connection import drain_subscriptions
from schemas.subjects import ANY_QUEUE_GROUP

log = logging.getLogger("nexec.agentd")


class JobSubscriptions:
    """The agent's host subject, its labels' subjects, every agent's subject and the
    ``_any`` subject (in its queue group)."""

    def __init__(self, nc: Client, config: AgentConfig) -> None:
        self._nc = nc
        self._config = config
        self._subscriptions: list[Subscription] = []

    async def open(self, on_job: Callable[[Msg], Awaitable[None]]) -> None:
        """Subscribe ``on_job`` to each subject, and wait until the server has them.

        Raises:
            nats.errors.Error: the server did not answer within ``connect_timeout_s``.
        """
        subjects = self._config.subjects
        labels = sorted(self._config.labels.items())
        for subject in (
            subjects.exec_host(self._config.hostname),
            *(subjects.exec_label(key, value) for key, value in labels),
            subjects.exec_all(),
        ):
            self._subscriptions.append(await self._nc.subscribe(subject, cb=on_job))
        self._subscriptions.append(
            await self._nc.subscribe(subjects.exec_any(), queue=ANY_QUEUE_GROUP, cb=on_job)
        )
        await self._nc.flush(timeout=max(1, round(self._config.connect_timeout_s)))

    async def drain(self) -> None:
        """Stop taking jobs, but take the ones NATS already delivered. Bounded by
        ``connect_timeout_s``: a drain waits for a round trip to the server, which may
        not answer; that is logged, never raised."""
        if not await drain_subscriptions(self._subscriptions, self._config.connect_timeout_s):
            log.warning("job subscriptions not drained: NATS did not answer")
