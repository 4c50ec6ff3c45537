"""One stop signal per job an agent holds (queued or running), and why it was given."""

from __future__ import annotations

import asyncio


class StopSignals:
    """Set a job's event to make the executor kill its process group."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._reasons: dict[str, str] = {}

    def open(self, job_id: str) -> asyncio.Event:
        event = asyncio.Event()
        self._events[job_id] = event
        return event

    def close(self, job_id: str) -> None:
        self._events.pop(job_id, None)
        self._reasons.pop(job_id, None)

    def stop(self, job_id: str, reason: str) -> bool:
        """Stop one job; False when this agent does not hold it."""
        event = self._events.get(job_id)
        if event is None:
            return False
        self._reasons.setdefault(job_id, reason)
        event.set()
        return True

    def stop_all(self, reason: str) -> None:
        for job_id in list(self._events):
            self.stop(job_id, reason)

    def held(self) -> list[str]:
        """The ids of every job held now (queued or running)."""
        return list(self._events)

    def reason(self, job_id: str) -> str:
        return self._reasons.get(job_id, "cancelled")
