"""When the client retries a request, and how long it waits first: the one retry rule.

Only answers that say nothing happened are retried: ``429`` (the key is over its rate)
and ``503`` (by the API's contract nothing ran, was cancelled or deleted). The wait is
the answer's ``Retry-After`` when it has one, else the next step of ``backoff_s``
(0.5, 1, 2 s): at most ``len(backoff_s)`` retries, four tries in all with the default.
An exec or shell is retried only when it carries an ``Idempotency-Key`` (the caller
decides, see ``nexec._client``); connection failures and timeouts are never retried,
since the request may have arrived. A ``503 fleet paused`` is not retried either: an
operator paused the fleet, and it stays paused until one resumes it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Awaitable, Callable

import msgspec

from nexec.errors import APIError, ServiceUnavailable, TooManyRequests

DEFAULT_BACKOFF_S = (0.5, 1.0, 2.0)
DEFAULT_MAX_RETRY_AFTER_S = 30.0
FLEET_PAUSED = "fleet paused"
"""The ``error`` of the 503 a paused fleet answers exec and shell with (docs/api.md)."""


class RetryPolicy(msgspec.Struct, frozen=True):
    """How the client retries a ``429`` or ``503``.

    Attributes:
        backoff_s: the waits before each retry when the answer has no ``Retry-After``;
            its length is the number of retries (``()`` turns retries off).
        max_retry_after_s: a ``Retry-After`` longer than this is not waited for: the
            error is raised at once.
    """

    backoff_s: tuple[float, ...] = DEFAULT_BACKOFF_S
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S

    def delay_s(self, retries_done: int, error: APIError) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to raise it."""
        if not isinstance(error, TooManyRequests | ServiceUnavailable):
            return None
        if error.error == FLEET_PAUSED:  # until an operator resumes it: not seconds
            return None
        if retries_done >= len(self.backoff_s):
            return None
        if error.retry_after_s is not None:
            return error.retry_after_s if error.retry_after_s <= self.max_retry_after_s else None
        return self.backoff_s[retries_done]


class Retrying(msgspec.Struct, frozen=True):
    """What ``on_retry`` is told before each retry: the refused request, the error and
    the seconds the client waits before trying again (``attempt`` counts from 1)."""

    method: str
    path: str
    attempt: int
    error: APIError
    delay_s: float


OnRetry = Callable[[Retrying], Awaitable[None] | None]
"""Called before each retry's wait; may be a coroutine function (then awaited)."""


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date; None when
    absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
