"""The blast radius of a key with ``max_hosts``: how many hosts run its commands at
once, counted across every controller (docs/security.md, "Blast radius").

One entry per such key in the host-slots bucket holds a lease per host running its
commands (``<job id>/<hostname>`` to that host's deadline). A controller takes slots
before a host starts, with a write checked against the revision it read, so two
controllers never both take the last one; it gives them back when the host
finishes. A lease whose deadline has passed no longer counts, so the slots of a
controller that died holding them come free at those deadlines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import nats.js.errors
from nats.js import JetStreamContext

from controller.errors import Forbidden, NatsUnavailable, StorageFull, nats_errors
from controller.jobs.bucket import BucketStore
from runtime.logs import log_fields
from schemas.decoding import WireError, decode_host_slots
from schemas.messages import HostSlots, RolloutPlan, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.host_slots")

GIVE_BACK_TRIES = 20
"""Writes tried when giving slots back before leaving them to their deadlines."""


def check_blast_radius(
    key_name: str, max_hosts: int | None, hosts: int, plan: RolloutPlan | None
) -> None:
    """The one rule of what a key with ``max_hosts`` may ask for: at most that many
    hosts without a rollout, and a rollout's ``batch_size`` at most that.

    Raises:
        Forbidden: the request would run more hosts at once than the key may.
    """
    if max_hosts is None:
        return
    at_once = hosts if plan is None else min(plan.batch_size, hosts)
    if at_once <= max_hosts:
        return
    asked = f"{hosts} hosts" if plan is None else f"batch_size {plan.batch_size}"
    raise Forbidden(
        f"key {key_name!r} may run at most {max_hosts} hosts at once (max_hosts "
        f"{max_hosts}); this request asks for {asked}: use a rollout with "
        f"batch_size <= {max_hosts}"
    )


def lease_id(job_id: str, hostname: str) -> str:
    """A host's lease in its key's entry (the same whichever controller writes it)."""
    return f"{job_id}/{hostname}"


class HostSlotsStore(BucketStore):
    """Takes and gives back host slots; every method may raise :class:`NatsUnavailable`."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        super().__init__(
            js, subjects.host_slots_bucket(), "nexec host slots: hosts running per max_hosts key"
        )
        self._subjects = subjects

    async def _read(self, key_name: str) -> tuple[dict[str, float], int]:
        """The key's leases not yet expired, and the entry's revision (0: none).

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        with nats_errors("reading the host slots"):
            try:
                entry = await self._kv().get(self._subjects.host_slots_key(key_name))
            except nats.js.errors.KeyNotFoundError:
                return {}, 0
        try:
            leases = decode_host_slots(entry.value or b"").leases
        except WireError as exc:  # rewritten by the next write
            log.error(
                "host slots of key %r unreadable: %s",
                key_name,
                exc,
                extra=log_fields(key_name=key_name),
            )
            leases = {}
        now = time.time()
        live = {lease: deadline for lease, deadline in leases.items() if deadline > now}
        return live, entry.revision or 0

    async def _write(self, key_name: str, leases: dict[str, float], revision: int) -> bool:
        """Write ``leases`` if the entry is still at ``revision``; False on a conflict.

        Raises:
            NatsUnavailable: not stored (StorageFull when the bucket is full).
        """
        kv, key = self._kv(), self._subjects.host_slots_key(key_name)
        value = encode(HostSlots(leases=leases))
        with nats_errors("storing the host slots", when_full="the host slots were not stored"):
            try:
                if revision == 0:
                    await kv.create(key, value)
                else:
                    await kv.update(key, value, last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                return False
        return True

    async def take(self, key_name: str, limit: int, wanted: dict[str, float]) -> bool:
        """Take a slot for every lease in ``wanted`` (lease id to deadline), all or none:
        False when fewer than that many of the key's ``limit`` slots are free. A lease
        already held counts as taken.

        Raises:
            NatsUnavailable: JetStream did not answer (StorageFull: the bucket is full).
        """
        while True:
            leases, revision = await self._read(key_name)
            new = {lease: deadline for lease, deadline in wanted.items() if lease not in leases}
            if not new:
                return True
            if len(leases) + len(new) > limit:
                return False
            if await self._write(key_name, {**leases, **new}, revision):
                return True

    async def free_in_s(self, key_name: str, limit: int, wanted: int) -> float:
        """Seconds until ``wanted`` of the key's ``limit`` slots are free at the latest:
        when enough of its leases reach their deadlines (a slot given back comes free
        sooner); 0 when they are free now.

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        leases, _ = await self._read(key_name)
        short = min(len(leases), len(leases) + wanted - limit)
        if short <= 0:
            return 0.0
        return max(0.0, sorted(leases.values())[short - 1] - time.time())

    async def give_back(self, key_name: str, leases: Iterable[str]) -> None:
        """Free the slots of ``leases`` (those not held are ignored). Never raises: a
        slot not given back comes free at its deadline (logged)."""
        freed = set(leases)
        try:
            for _ in range(GIVE_BACK_TRIES):
                held, revision = await self._read(key_name)
                if not freed & held.keys():
                    return
                kept = {lease: deadline for lease, deadline in held.items() if lease not in freed}
                if await self._write(key_name, kept, revision):
                    return
        except (NatsUnavailable, StorageFull) as exc:
            log.warning("host slots of key %r not given back (free at their deadlines): %s",
                        key_name, exc, extra=log_fields(key_name=key_name))  # fmt: skip
            return
        log.warning(
            "host slots of key %r kept changing: free at their deadlines",
            key_name,
            extra=log_fields(key_name=key_name),
        )
