"""The text exposition of a metrics registry, made at most once per ``metrics_cache_s``.

``/metrics`` needs no key, and making the exposition costs the controller
milliseconds of CPU (about 10 ms for 550 lines, docs/performance.md N8): a flood of
scrapes must not cost that each. A scrape within ``metrics_cache_s`` of the one that
made the text gets the same text; Prometheus scrapes every few seconds at most, so
it never sees one twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest


class Exposition:
    """The registry's exposition, made anew when the last is ``cache_s`` old."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        cache_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._cache_s = cache_s
        self._clock = clock
        self._text = b""
        self._made_at: float | None = None

    def text(self) -> bytes:
        now = self._clock()
        if self._made_at is None or now - self._made_at >= self._cache_s:
            self._text = generate_latest(self.registry)
            self._made_at = now
        return self._text
