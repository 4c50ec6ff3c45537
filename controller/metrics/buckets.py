"""A histogram's counts kept as plain integers (one event loop, so no lock): what the
controller observes on its hot path, turned into a Prometheus histogram only when
``/metrics`` is scraped (:mod:`controller.metrics.instruments`)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from prometheus_client.core import HistogramMetricFamily


class Buckets:
    """One histogram's counts: how many observations fell at or under each bound (and
    over the last), and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str] = ()) -> None:
        """Add these counts to ``family`` as cumulative ``le`` buckets."""
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(labels), buckets, self.total)
