"""What an agent counts: logged in one line when it stops, and reported by its service
discovery answers (``$SRV.STATS``, agentd/service.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from schemas.messages import ExecResult, ResultStatus


@dataclass(slots=True)
class AgentCounters:
    received: int = 0
    started: int = 0
    duplicates: int = 0
    refused: int = 0
    replies_lost: int = 0
    answered: Counter[ResultStatus] = field(default_factory=Counter)
    """Results this agent answered (refusals included), by final status."""
    last_error: str = ""
    """The error of the last ``failed`` result."""
    processing_ns: int = 0
    """Nanoseconds from receiving job messages to answering them (the time a job
    waited for a slot and ran included), over every job answered so far."""

    def answer(self, result: ExecResult) -> None:
        """Count a result sent for a job this agent received."""
        self.answered[result.status] += 1
        if result.status is ResultStatus.FAILED:
            self.last_error = result.error or ""

    def counts(self) -> dict[str, int]:
        """The counters of the shutdown summary, in its order."""
        return {
            "received": self.received,
            "started": self.started,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "replies_lost": self.replies_lost,
        }
