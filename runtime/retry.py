"""Trying a write again, with backoff, until it succeeds or a time bound passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


async def keep_trying(
    attempt: Callable[[], Awaitable[object]],
    *,
    retry_for_s: float,
    errors: tuple[type[BaseException], ...],
) -> int | None:
    """Call ``attempt`` after 0.5 s, then after twice as long each time (at most 10 s
    apart), until it returns without raising one of ``errors`` or the next try would
    start more than ``retry_for_s`` from now.

    Returns:
        How many tries it took, the first one (made before this call) included;
        None when it was given up.

    Raises:
        Whatever ``attempt`` raises that is not one of ``errors``.
    """
    give_up_at = time.monotonic() + retry_for_s
    delay_s = RETRY_FIRST_S
    tries = 1
    while time.monotonic() + delay_s < give_up_at:
        await asyncio.sleep(delay_s)  # backoff between tries
        tries += 1
        try:
            await attempt()
        except errors:
            delay_s = min(2 * delay_s, RETRY_MAX_S)
            continue
        return tries
    return None
