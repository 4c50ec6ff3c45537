"""Closing a NATS connection without ever hanging on a server that does not answer.

nats-py's ``drain()`` waits for a round trip per subscription and for a final
flush, each with its own timeout of up to 10 s, and swallows a cancel while it
does. A daemon that stops must not wait that long for a frozen or unreachable
server, so both sides close their connections with :func:`drain_or_close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.client import Client

log = logging.getLogger("nexec.nats")


async def drain_or_close(nc: Client, timeout_s: float) -> bool:
    """Drain ``nc`` (deliver what was received, send what is queued, close), giving
    up after ``timeout_s``: then close it at once. Returns True when drained.

    Raises nothing for a connection that is closed, reconnecting, broken or
    unanswered: those are logged, since a caller that is stopping has nothing
    better to do.
    """
    if nc.is_closed:
        return False
    drain = asyncio.ensure_future(nc.drain())
    await asyncio.wait({drain}, timeout=timeout_s)
    if drain.done():
        exc = None if drain.cancelled() else drain.exception()
        if exc is None:
            return True
        log.warning("NATS connection not drained: %s", exc or type(exc).__name__)
    else:
        log.warning("NATS connection not drained within %.1f s: closing it", timeout_s)
    # Close first: a cancelled drain goes on to flush, which fails fast only once closed.
    # close() flushes what is still queued: on a dead socket that raises OSError.
    with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
        await asyncio.wait_for(nc.close(), timeout_s)
    drain.cancel()
    await asyncio.wait({drain}, timeout=timeout_s)
    if drain.done() and not drain.cancelled():
        drain.exception()  # retrieved, so asyncio does not log it as never retrieved
    return False
