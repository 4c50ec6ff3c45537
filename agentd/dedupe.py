"""Remembering which job ids an agent has taken, so none runs twice."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Taken:
    deadline: float
    reply: str
    """The reply subject of the delivery that took the job."""


class RecentJobs:
    """Job ids seen, each kept until its deadline has passed.

    After its deadline a job is refused anyway, so forgetting it then is safe:
    every :meth:`take` first forgets the ids whose deadline passed (a heap ordered
    by deadline makes that cost O(log n) per id), so memory follows the jobs of
    the last few minutes, not the agent's lifetime. At most ``max_entries`` ids are
    kept even so; past that the oldest taken are forgotten first.
    """

    def __init__(
        self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.time
    ) -> None:
        """``clock``: wall-clock seconds, the time base of job deadlines."""
        self._max_entries = max_entries
        self._clock = clock
        self._taken: dict[str, Taken] = {}
        self._by_deadline: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._taken)

    def take(self, job_id: str, deadline: float, reply: str) -> Taken | None:
        """Record ``job_id`` as taken; None the first time, else the earlier taking."""
        self._forget_expired(self._clock())
        earlier = self._taken.get(job_id)
        if earlier is not None:
            return earlier
        while len(self._taken) >= self._max_entries:
            del self._taken[next(iter(self._taken))]
        self._taken[job_id] = Taken(deadline, reply)
        heapq.heappush(self._by_deadline, (deadline, job_id))
        return None

    def _forget_expired(self, now: float) -> None:
        heap = self._by_deadline
        while heap and heap[0][0] <= now:
            deadline, job_id = heapq.heappop(heap)
            taken = self._taken.get(job_id)
            if taken is not None and taken.deadline == deadline:
                del self._taken[job_id]
        if len(heap) > 2 * self._max_entries:  # ids forgotten at the cap: drop their entries
            self._by_deadline = [(t.deadline, j) for j, t in self._taken.items()]
            heapq.heapify(self._by_deadline)
