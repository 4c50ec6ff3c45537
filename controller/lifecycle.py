"""The controller's own lifecycle: requests in flight, and draining on SIGTERM.

While draining, new requests get 503 (the listening socket stays open so that
callers get an answer, not a refused connection) and requests in flight run
to their end; then the server stops. A stream that could last as long as a job
(the live output) ends at once instead: its client resumes it on another
controller with ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass
class Lifecycle:
    draining: bool = False
    in_flight: int = 0
    served: int = 0
    refused_while_draining: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _draining: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_ended(self) -> None:
        self.in_flight -= 1
        self.served += 1
        if self.in_flight == 0:
            self._idle.set()

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests; wait up to ``timeout_s`` for those in flight.

        Returns True when none was left running.
        """
        self.draining = True
        self._draining.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self.in_flight == 0

    async def until_draining(self, items: AsyncGenerator[T, None]) -> AsyncIterator[T]:
        """``items``, until they end or the controller starts draining (then ``items``
        is closed where it waits): a stream must not hold the stop for as long as a
        job runs."""
        draining = asyncio.ensure_future(self._draining.wait())
        step: asyncio.Future[T] | None = None
        try:
            while not self.draining:
                step = asyncio.ensure_future(anext(items))
                await asyncio.wait((step, draining), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return  # draining: ``finally`` stops the step where it waits
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            # Also when the caller is cancelled while a step waits: stop that step
            # before closing ``items`` (it would run on in its own task, and closing a
            # generator that runs raises RuntimeError instead of the cancellation).
            draining.cancel()
            await _stopped(step)
            await items.aclose()

    def counts(self) -> dict[str, int]:
        """The counters of the shutdown summary, in its order."""
        return {
            "served": self.served,
            "in_flight": self.in_flight,
            "refused_while_draining": self.refused_while_draining,
        }


async def _stopped(step: asyncio.Future[T] | None) -> None:
    """Cancel ``step`` (a pending ``anext`` of a stream), if it runs, and wait until it
    stopped."""
    if step is not None and not step.done():
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await step
