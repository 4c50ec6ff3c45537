"""A rollout's entry as the controller driving it holds it: the state it read or wrote
last, the hosts finished since, and every write checked against the revision read last
and made under the driver's lease (docs/jobs.md, "Rollouts").

:mod:`controller.jobs.rollout_store` reads and writes the bucket;
:mod:`controller.jobs.rollout` decides what to write. A write that meets a concurrent
one (a cancel stored by another controller) reads the entry again and applies its
change to that; a write that finds another controller named as the driver raises
:class:`LeaseLost`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import msgspec

from controller.errors import NatsUnavailable
from controller.jobs.rollout_store import RolloutChanged, RolloutStore, StoredRollout
from runtime.logs import log_fields
from runtime.retry import keep_trying
from schemas.messages import RolloutState

log = logging.getLogger("nexec.controller.rollouts")

Change = Callable[[RolloutState], RolloutState | None]
"""A change of the entry's state; None declines it (the rollout stopped meanwhile)."""


class LeaseLost(Exception):
    """Another controller took the rollout over: this one stops driving it."""


class RolloutEntry:
    """The entry of one rollout, written by the controller driving it."""

    def __init__(
        self,
        store: RolloutStore,
        stored: StoredRollout,
        *,
        job_id: str,
        driver: str,
        lease_s: float,
        write_until: float,
    ) -> None:
        """``driver`` is this controller's instance id; a write failing for want of
        JetStream is tried again until ``write_until`` (the rollout's deadline, wall
        clock)."""
        self._store, self._job_id = store, job_id
        self._driver, self._lease_s, self._write_until = driver, lease_s, write_until
        self.state, self._revision = stored.state, stored.revision
        self._renew_at = time.monotonic() + lease_s / 3
        self._unwritten: dict[str, bool] = {}
        """Hosts finished (and whether each failed) not yet in the entry."""
        self._counted: tuple[RolloutState, int] | None = None
        """A state and how many of its finished hosts failed (counted once per state)."""

    @property
    def failures(self) -> int:
        """How many hosts failed, those not yet written included (the stored ones
        counted once per state read or written, not at each call)."""
        state = self.state
        if self._counted is None or self._counted[0] is not state:
            self._counted = (state, sum(state.finished.values()))
        unwritten = self._unwritten.items()
        return self._counted[1] + sum(f for host, f in unwritten if host not in state.finished)

    def finished(self, host: str, failed: bool) -> None:
        """Note that ``host`` finished; it is stored with the next write."""
        self._unwritten[host] = failed

    def renew_in(self) -> float:
        """Seconds until the lease is due to be renewed (0 when it is due)."""
        return max(0.0, self._renew_at - time.monotonic())

    async def renew_if_due(self) -> None:
        """Write the entry unchanged (but for the hosts finished) when the lease is due.

        Raises:
            LeaseLost, NatsUnavailable: as :meth:`write`.
        """
        if time.monotonic() >= self._renew_at:
            await self.write(lambda state: state)

    async def write(self, change: Change) -> bool:
        """Apply ``change`` to the entry, checked against the revision read last; on a
        conflict read it again and apply ``change`` to that. False when ``change``
        declined (the rollout stopped meanwhile). JetStream failing is tried again for
        as long as the rollout has time left.

        Raises:
            LeaseLost: another controller drives the rollout now.
            NatsUnavailable: the entry could not be written in that time.
        """
        written = False

        async def attempt() -> None:
            nonlocal written
            written = await self._write_once(change)

        try:
            return await self._write_once(change)
        except NatsUnavailable as exc:
            log.warning(
                "rollout %r: state not stored yet: %s",
                self._job_id,
                exc,
                extra=log_fields(job_id=self._job_id),
            )
        left = max(0.0, self._write_until - time.time())
        if await keep_trying(attempt, retry_for_s=left, errors=(NatsUnavailable,)) is None:
            raise NatsUnavailable(f"rollout {self._job_id}: its state could not be stored")
        return written

    async def _write_once(self, change: Change) -> bool:
        """Raises: LeaseLost, NatsUnavailable."""
        store, job_id = self._store, self._job_id
        while True:
            if self.state.driver != self._driver:
                raise LeaseLost(self.state.driver)
            finishes = dict(self._unwritten)
            base = self.state
            if finishes:
                base = msgspec.structs.replace(base, finished={**base.finished, **finishes})
            changed = change(base)
            if changed is None:
                return False
            new = msgspec.structs.replace(changed, lease_until=time.time() + self._lease_s)
            self._renew_at = time.monotonic() + self._lease_s / 3
            try:
                self._revision = await store.update(job_id, new, self._revision)
                self.state = new
                for host in finishes:
                    self._unwritten.pop(host, None)
                return True
            except RolloutChanged:
                stored = await store.read(job_id)
                if stored is None:  # the bucket was made again: write it anew
                    self._revision = await store.create(job_id, self.state)
                else:
                    self.state, self._revision = stored.state, stored.revision
