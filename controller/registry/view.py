"""The live agents, as a controller sees them: a local view of the registry bucket.

An agent is live from its first valid heartbeat until its entry is deleted
(clean stop) or expires (three missed heartbeats; the server removes the entry,
and this view also forgets an agent on its own after that long). Expiry goes by
this controller's monotonic clock when it observed the heartbeat, plus three of
the heartbeat's (validated) intervals; the times the heartbeat claims are only
shown. That clock is the *watch time*: it counts only while the watch is known to
follow the bucket. The feed confirms the watch every few seconds; no agent expires
past the last confirmation, and when the watch is lost (NATS gone, a stalled
consumer, a stream without a leader) the view is suspended back to that
confirmation, so heartbeats an agent could not write or the watch could not deliver
are never counted as missed. The view is fed by :mod:`controller.registry.feed`,
which hands over only valid entries and names each by its key; nothing here
touches NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from runtime.logs import log_fields
from schemas.limits import MISSED_HEARTBEATS_BEFORE_EXPIRY
from schemas.messages import Heartbeat
from schemas.targets import Target, TargetKind
from schemas.untrusted import shown

log = logging.getLogger("nexec.controller.registry")

EXPIRY_MARGIN_S = 0.01
"""wait_until re-checks this long after an entry's expiry, so that it has expired by then."""


@dataclass(frozen=True, slots=True)
class AgentEntry:
    heartbeat: Heartbeat
    expires_at: float
    """Watch time (see :meth:`Registry._now`) after which the agent counts as gone."""
    heard_at: float = 0.0
    """This controller's clock when the heartbeat was observed."""


class Registry:
    """Hostname → latest heartbeat of every live agent."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._agents: dict[str, AgentEntry] = {}
        self._changed = asyncio.Event()
        self._suspended_at: float | None = None
        self._suspended_s = 0.0
        self._confirmed_at = math.inf
        """Watch time the watch was last confirmed whole at (see :meth:`confirm`);
        infinite until a feed confirms one (the view then expires by the clock alone)."""
        self.refused = 0
        """Registry entries refused as invalid since this controller started."""

    def _now(self) -> float:
        """Watch time: this controller's monotonic clock, stopped while the watch is
        suspended, so that no agent expires for heartbeats the watch could not see."""
        now = self._clock() if self._suspended_at is None else self._suspended_at
        return now - self._suspended_s

    def watch_time(self) -> float:
        """Now, in watch time: what a feed passes to :meth:`confirm` once its check,
        started now, succeeded."""
        return self._now()

    def confirm(self, at: float) -> None:
        """The watch was whole at watch time ``at``: every heartbeat written before it
        was delivered, and the bucket took writes. Agents may expire up to it."""
        if self._confirmed_at == math.inf or at > self._confirmed_at:
            self._confirmed_at = at
            self._notify()

    def _expiry_now(self) -> float:
        """Watch time up to which agents expire: never past the last confirmation."""
        return min(self._now(), self._confirmed_at)

    def suspend(self) -> None:
        """Stop expiring agents: the watch lost NATS, or stalled, and may have missed
        heartbeats since it was last confirmed, so watch time goes back to that
        confirmation (safe to call again)."""
        if self._suspended_at is None:
            self._suspended_at = min(self._clock(), self._confirmed_at + self._suspended_s)
            log.info("registry view suspended: no agent expires until the watch is back")

    def resume(self) -> None:
        """Expire agents again, counting only the time the watch was healthy."""
        if self._suspended_at is not None:
            self._suspended_s += self._clock() - self._suspended_at
            self._suspended_at = None
            log.info("registry view resumed")
            self._notify()

    def observe(self, hostname: str, heartbeat: Heartbeat) -> None:
        """Record a valid heartbeat read from ``hostname``'s entry: the key's hostname,
        validated by :func:`schemas.registry_entry.registry_key_hostname` (safe to log)."""
        if hostname not in self._agents:
            log.info(
                "agent joined: %s", hostname, extra=log_fields(hostname=hostname)
            )  # a validated hostname
        expires_at = self._now() + MISSED_HEARTBEATS_BEFORE_EXPIRY * heartbeat.interval_s
        self._agents[hostname] = AgentEntry(heartbeat, expires_at, self._clock())
        self._notify()

    def refuse(self, key: str, reason: str) -> None:
        """Count and log an invalid entry under ``key``. An agent's earlier valid
        heartbeat stays, and still expires when it would have."""
        self.refused += 1
        log.warning("registry entry %s refused (%d so far): %s", shown(key), self.refused, reason)
        self._notify()

    def remove(self, hostname: str, reason: str) -> None:
        """Forget an agent whose entry was deleted or expired."""
        if self._agents.pop(hostname, None) is not None:
            log.info("agent left: %s (%s)", hostname, reason, extra=log_fields(hostname=hostname))
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def get(self, hostname: str) -> Heartbeat | None:
        entry = self._agents.get(hostname)
        if entry is None or entry.expires_at <= self._expiry_now():
            return None
        return entry.heartbeat

    def heard_at(self, hostname: str) -> float | None:
        """When (this controller's clock) the agent's last heartbeat was observed."""
        entry = self._agents.get(hostname)
        return None if entry is None else entry.heard_at

    def heard_since(self, since: float, *, besides: str) -> bool:
        """Whether a heartbeat of an agent other than ``besides`` was observed at or
        after ``since`` (this controller's clock)."""
        return any(
            entry.heard_at >= since
            for hostname, entry in self._agents.items()
            if hostname != besides
        )

    def live(self) -> list[Heartbeat]:
        """Every live agent, sorted by hostname; forgets the expired ones."""
        now = self._expiry_now()
        for hostname in [h for h, entry in self._agents.items() if entry.expires_at <= now]:
            log.info(
                "agent expired: %s (no heartbeat)", hostname, extra=log_fields(hostname=hostname)
            )
            del self._agents[hostname]
        return [self._agents[hostname].heartbeat for hostname in sorted(self._agents)]

    def resolve(self, target: Target) -> list[str]:
        """Hostnames of the live agents ``target`` addresses, sorted."""
        if target.kind is TargetKind.HOST:
            return [target.hostname] if self.get(target.hostname) is not None else []
        return [hb.hostname for hb in self.live() if target.matches(hb.hostname, hb.labels)]

    async def wait_until(self, condition: Callable[[Registry], bool], timeout_s: float) -> None:
        """Wait until ``condition(self)`` holds, re-checking on every change of the
        bucket and whenever an agent's entry expires here.

        Raises:
            TimeoutError: it did not hold within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                changed = self._changed
                until_expiry = self._until_next_expiry()
                if until_expiry is None:
                    await changed.wait()
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(until_expiry + EXPIRY_MARGIN_S):
                        await changed.wait()

    def _until_next_expiry(self) -> float | None:
        """Seconds until the next live agent expires here; None when there is none."""
        if self._suspended_at is not None:
            return None
        now = self._expiry_now()
        pending = [entry.expires_at - now for entry in self._agents.values()]
        return min((left for left in pending if left > 0), default=None)
