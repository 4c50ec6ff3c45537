"""Request rate limits: a token bucket per name, in this process. The controller's
per-key limit of HTTP requests (the API key's name) and both daemons' limit of the
discovery requests they answer (:mod:`runtime.service`) use it.

Each process limits on its own (no shared state): behind a load balancer
with N controllers a key gets up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    """``rate_per_s`` requests per second on average, bursts of up to ``burst``."""

    def __init__(
        self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self.refused = 0
        """Requests refused (a non-zero answer of :meth:`retry_after_s`)."""

    @property
    def enabled(self) -> bool:
        return self._rate_per_s > 0

    def retry_after_s(self, key_name: str) -> int:
        """Take one token for ``key_name``: 0 if allowed, else whole seconds to wait."""
        if not self.enabled:
            return 0
        now = self._clock()
        tokens, last = self._buckets.get(key_name, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate_per_s)
        if tokens >= 1:
            self._buckets[key_name] = (tokens - 1, now)
            return 0
        self._buckets[key_name] = (tokens, now)
        self.refused += 1
        return max(1, math.ceil((1 - tokens) / self._rate_per_s))
