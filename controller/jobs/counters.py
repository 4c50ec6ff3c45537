"""What a controller's dispatcher decided, counted once: read by its service discovery
answers (``$SRV.STATS``, controller/service.py) and, when ``/metrics`` is scraped, by
its metrics (``nexec_host_results_total`` and ``nexec_collection_seconds``,
:class:`controller.metrics.instruments.JobMetrics`). Counted whether metrics are on or
off."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from controller.metrics.buckets import Buckets
from schemas.messages import ExecResult, ResultStatus

COLLECTION_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(slots=True)
class DispatchCounters:
    collections: int = 0
    """Jobs (or a rollout's host copies) published, or taken over, and collected."""
    publish_failures: int = 0
    last_error: str = ""
    collecting_ns: int = 0
    """Nanoseconds from publishing a job to deciding its last host, over every job."""
    hosts: Counter[ResultStatus] = field(default_factory=Counter)
    """Every host's final outcome, once per host and job, by status: collected, given
    up (``no_reply``), a rollout copy not published (``no_reply``), ``skipped``."""
    collection: Buckets = field(default_factory=lambda: Buckets(COLLECTION_SECONDS_BUCKETS))
    """Seconds from a whole job's publish to its last host decided (not a rollout's
    host copies, nor a host followed after a takeover)."""

    def publish_failed(self, reason: str) -> None:
        self.publish_failures += 1
        self.last_error = reason

    def decided(self, results: list[ExecResult]) -> None:
        """Count hosts' final outcomes decided outside a collection (skipped, or a copy
        that could not be published)."""
        self.hosts.update(result.status for result in results)

    def collected(self, results: list[ExecResult], took_ns: int) -> None:
        """A collection ended, ``took_ns`` after it began, with every host's outcome."""
        self.collections += 1
        self.collecting_ns += took_ns
        self.hosts.update(result.status for result in results)

    def job_collected(self, seconds: float) -> None:
        """A whole job's collection ended, ``seconds`` after its publish."""
        self.collection.observe(seconds)
