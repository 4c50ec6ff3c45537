"""The agent's own NATS connection: how it connects, and what it logs of its events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client

from agentd.config import AgentConfig
from runtime.connection import NatsErrorLog
from runtime.settings import server_urls, urls_shown

log = logging.getLogger("nexec.agentd")


async def connect(
    nc: Client,
    config: AgentConfig,
    *,
    running: Callable[[], bool],
    reconnected: Callable[[], Awaitable[None]],
    errors: NatsErrorLog,
) -> None:
    """Connect ``nc`` to ``config.nats_url``, reconnecting without end once connected.
    ``running``: whether a lost connection is worth a warning; ``reconnected``:
    awaited each time the connection came back; ``errors``: logs nats-py's errors.

    Raises:
        nats.errors.Error: nats-py's ``connect`` gave up.
        OSError, ssl.SSLError: a TLS file cannot be read.
    """

    async def on_disconnected() -> None:
        if running():
            log.warning("NATS: disconnected from %s", urls_shown(config.nats_url))

    await nc.connect(
        servers=server_urls(config.nats_url),
        name=f"nexec-agentd {config.hostname}",
        connect_timeout=max(1, round(config.connect_timeout_s)),
        max_reconnect_attempts=-1,
        error_cb=errors.on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=reconnected,
        **config.nats_connect_options(),
    )


def server_shown(nc: Client) -> str:
    """The NATS server ``nc`` is connected to now ("" when it is not)."""
    url = nc.connected_url
    return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else ""
