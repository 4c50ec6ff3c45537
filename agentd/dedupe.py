"""Remembering which job ids an agent has taken, so none runs twice."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Taken:
    deadline: float
    reply: str
    """The reply subject of the delivery that took the job."""


class RecentJobs:
    """Job ids seen, each kept until its deadline has passed.

    After its deadline a job is refused anyway, so forgetting it then is safe.
    At most ``max_entries`` ids are kept; past that the oldest are forgotten
    first (a job so old would in practice be past its deadline too).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._taken: dict[str, Taken] = {}

    def __len__(self) -> int:
        return len(self._taken)

    def take(self, job_id: str, deadline: float, reply: str) -> Taken | None:
        """Record ``job_id`` as taken; None the first time, else the earlier taking."""
        earlier = self._taken.get(job_id)
        if earlier is not None:
            return earlier
        if len(self._taken) >= self._max_entries:
            self._prune(time.time())
        self._taken[job_id] = Taken(deadline, reply)
        return None

    def _prune(self, now: float) -> None:
        self._taken = {
            job_id: taken for job_id, taken in self._taken.items() if taken.deadline > now
        }
        while len(self._taken) >= self._max_entries:
            del self._taken[next(iter(self._taken))]
