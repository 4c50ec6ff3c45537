"""``Lifecycle.until_draining``: a stream that must not hold the controller's stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import pytest

from controller.lifecycle import Lifecycle


async def test_a_stream_cancelled_while_it_waits_stops_its_source_and_stays_cancelled() -> None:
    """Its handler cancelled (a controller's runner stopping, a crash) while the source
    waits for a job's next event: the source is closed at once, not left running in a
    task of its own, and the handler ends cancelled (it raised RuntimeError:
    ``aclose(): asynchronous generator is already running``)."""
    waiting, closed = asyncio.Event(), asyncio.Event()

    async def events() -> AsyncGenerator[int, None]:
        try:
            yield 1
            waiting.set()
            await asyncio.Event().wait()  # a job that runs on
            yield 2
        finally:
            closed.set()

    got: list[int] = []

    async def follow() -> None:
        async for event in Lifecycle().until_draining(events()):
            got.append(event)

    handler = asyncio.create_task(follow())
    await waiting.wait()
    handler.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handler
    assert closed.is_set() and got == [1]


async def test_a_stream_ends_when_the_controller_starts_draining() -> None:
    lifecycle = Lifecycle()
    waiting, closed = asyncio.Event(), asyncio.Event()

    async def events() -> AsyncGenerator[int, None]:
        try:
            yield 1
            waiting.set()
            await asyncio.Event().wait()
            yield 2
        finally:
            closed.set()

    async def follow() -> list[int]:
        return [event async for event in lifecycle.until_draining(events())]

    handler = asyncio.create_task(follow())
    await waiting.wait()
    assert await lifecycle.drain(timeout_s=1.0)
    assert await handler == [1]
    assert closed.is_set()
