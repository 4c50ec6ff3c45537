"""What an agent counts, logged in one line when it stops."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AgentCounters:
    received: int = 0
    started: int = 0
    duplicates: int = 0
    refused: int = 0
    replies_lost: int = 0

    def counts(self) -> dict[str, int]:
        """The counters of the shutdown summary, in its order."""
        return {
            "received": self.received,
            "started": self.started,
            "duplicates": self.duplicates,
            "refused": self.refused,
            "replies_lost": self.replies_lost,
        }
