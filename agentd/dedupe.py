"""Remembering which job ids an agent has taken, so none runs twice."""

from __future__ import annotations

import time


class RecentJobs:
    """Job ids seen, each kept until its deadline has passed.

    After its deadline a job is refused anyway, so forgetting it then is safe.
    At most ``max_entries`` ids are kept; past that the oldest are forgotten
    first (a job so old would in practice be past its deadline too).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._expiry_by_job: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._expiry_by_job)

    def first_time(self, job_id: str, deadline: float) -> bool:
        """Record ``job_id``; True unless it was already recorded."""
        if job_id in self._expiry_by_job:
            return False
        if len(self._expiry_by_job) >= self._max_entries:
            self._prune(time.time())
        self._expiry_by_job[job_id] = deadline
        return True

    def _prune(self, now: float) -> None:
        self._expiry_by_job = {
            job_id: expiry for job_id, expiry in self._expiry_by_job.items() if expiry > now
        }
        while len(self._expiry_by_job) >= self._max_entries:
            del self._expiry_by_job[next(iter(self._expiry_by_job))]
