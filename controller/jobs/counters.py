"""What a controller's dispatcher counts, for its service discovery answers
(``$SRV.STATS``, controller/service.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas.messages import ExecResult, ResultStatus


@dataclass(slots=True)
class DispatchCounters:
    collections: int = 0
    """Jobs (or a rollout's host copies) published, or taken over, and collected."""
    publish_failures: int = 0
    last_error: str = ""
    collecting_ns: int = 0
    """Nanoseconds from publishing a job to deciding its last host, over every job."""
    hosts: Counter[ResultStatus] = field(default_factory=Counter)
    """Every host outcome of the jobs collected, by status (``no_reply`` included)."""

    def publish_failed(self, reason: str) -> None:
        self.publish_failures += 1
        self.last_error = reason

    def collected(self, results: list[ExecResult], took_ns: int) -> None:
        self.collections += 1
        self.collecting_ns += took_ns
        self.hosts.update(result.status for result in results)
