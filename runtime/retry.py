"""The one backoff of nexec's retry loops (:func:`backoff_s`), and trying a write again
with it until it succeeds or a time bound passes (:func:`keep_trying`).

Each loop keeps its own stop condition and log line; the waits between its tries
come from :func:`backoff_s`: the write retries here, the controller's NATS setup
(``controller/natslink.py``) and its registry and fleet pause watches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


def backoff_s(max_s: float = RETRY_MAX_S) -> Iterator[float]:
    """The waits between tries, endless: 0.5 s, then twice as long each time, at most
    ``max_s``."""
    delay_s = RETRY_FIRST_S
    while True:
        yield delay_s
        delay_s = min(2 * delay_s, max_s)


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
    tries = 1
    for delay_s in backoff_s():
        if time.monotonic() + delay_s >= give_up_at:
            return None
        await asyncio.sleep(delay_s)  # backoff between tries
        tries += 1
        try:
            await attempt()
        except errors:
            continue
        return tries
    raise AssertionError("backoff_s is endless")  # pragma: no cover
