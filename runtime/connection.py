"""Closing a NATS connection without ever hanging on a server that does not answer,
and logging nats-py's asynchronous errors (:class:`NatsErrorLog`).

nats-py's ``drain()`` waits for a round trip per subscription and for a final
flush, each with its own timeout of up to 10 s, and swallows a cancel while it
does. A daemon that stops must not wait that long for a frozen or unreachable
server, so both sides close their connections with :func:`drain_or_close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable

import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription

log = logging.getLogger("nexec.nats")


CONNECTION_ERRORS = (nats.errors.Error, OSError, TimeoutError, EOFError)
"""What nats-py reports of the server and the connection; anything else it hands to
``error_cb`` was raised by a subscription's callback."""


class NatsErrorLog:
    """The ``error_cb`` of a connection (:meth:`on_error`): each NATS or connection
    error logged at WARNING, an exception a subscription's callback raised (a bug) at
    ERROR with its traceback, and a slow consumer's drops (nats-py reports each message
    dropped: a flood would be a flood of lines) at the 1st, 10th, 100th... of each
    subscription only, with the count."""

    def __init__(self, logger: logging.Logger, shown: str = "") -> None:
        """``shown``: the connection as its log lines name it (no secret in it)."""
        self._log = logger
        self._prefix = f"NATS {shown}" if shown else "NATS"
        self.drops: Counter[str] = Counter()
        """Messages dropped, by the subscription's subject."""

    @property
    def slow_consumer_drops(self) -> int:
        return sum(self.drops.values())

    async def on_error(self, exc: Exception) -> None:
        """nats-py's ``error_cb`` (it takes coroutine functions only)."""
        if isinstance(exc, nats.errors.SlowConsumerError):
            subject = exc.sub.subject
            self.drops[subject] += 1
            count = self.drops[subject]
            if count == 10 ** (len(str(count)) - 1):  # 1, 10, 100...
                self._log.warning(
                    "%s: slow consumer on %r: %d messages dropped so far",
                    self._prefix, subject, count,
                )  # fmt: skip
            return
        if not isinstance(exc, CONNECTION_ERRORS):  # raised by a callback of ours: a bug
            self._log.error("%s: a message callback failed", self._prefix, exc_info=exc)
            return
        self._log.warning("%s: %s", self._prefix, exc or type(exc).__name__)


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
    closed = await close_within(nc, timeout_s)
    drain.cancel()
    if closed:
        await _settle(drain, timeout_s)
    else:
        drain.add_done_callback(_retrieve)
    return False


async def close_within(nc: Client, timeout_s: float) -> bool:
    """Close ``nc``, waiting at most ``timeout_s`` for it; False when it did not close
    in time (it is then left behind).

    Raises nothing: close() flushes what is still queued, which fails on a dead
    socket (OSError), and nats-py may swallow the cancel of a timed-out wait, so
    this never relies on ``asyncio.wait_for``.
    """
    if nc.is_closed:
        return True
    closing = asyncio.ensure_future(nc.close())
    if await _settle(closing, timeout_s):
        return True
    log.warning("NATS connection not closed within %.1f s: left behind", timeout_s)
    closing.cancel()
    closing.add_done_callback(_retrieve)
    return False


async def drain_subscriptions(subscriptions: Iterable[Subscription], timeout_s: float) -> bool:
    """Drain each subscription (its messages already delivered are still handled),
    waiting at most ``timeout_s``: a drain waits for a round trip to the server, which
    may not answer. Returns False when one did not drain; raises nothing."""
    drains = [
        asyncio.ensure_future(subscription.drain())  # type: ignore[no-untyped-call]  # nats-py: untyped
        for subscription in subscriptions
    ]
    if not drains:
        return True
    _, pending = await asyncio.wait(drains, timeout=timeout_s)
    for drain in pending:
        drain.cancel()
    results = await asyncio.gather(*drains, return_exceptions=True)
    return not pending and not any(isinstance(result, Exception) for result in results)


def _retrieve(task: asyncio.Future[None]) -> None:
    """Retrieve the outcome of a task left behind, so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


async def _settle(task: asyncio.Future[None], timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for ``task``; True when it ended. Its error, if any,
    is retrieved (so asyncio does not log it as never retrieved) and logged."""
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        return False
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("NATS: %s", exc or type(exc).__name__)
    return True
