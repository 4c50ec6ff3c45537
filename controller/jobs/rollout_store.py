"""Where a rollout's progress lives: one entry per rollout in the rollouts bucket.

The controller driving a rollout writes the entry (hosts started, hosts finished,
why it stopped), each write checked against the revision it read last, so a
concurrent write (a cancel sent to another controller) is never overwritten: the
driver reads the entry again and goes on from what it says. A host is written as
started before its job is published. Entries expire ``job_retention_s`` after their
last write, as job records do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import Header

from controller.errors import NatsUnavailable, nats_errors
from controller.jobs.bucket import BucketStore
from controller.jobs.outcome import ROLLOUT_CANCELLED_BY
from runtime.logs import log_fields
from runtime.streamwriter import StreamWriter
from schemas.decoding import WireError, decode_rollout_state
from schemas.messages import RolloutState, encode
from schemas.subjects import Subjects

log = logging.getLogger("nexec.controller.rollouts")

CANCEL_TRIES = 5
WRONG_LAST_SEQUENCE = (10071, 10164)
"""JetStream's error codes for a write whose expected last sequence is not the entry's."""


class RolloutChanged(Exception):
    """The entry changed since it was read (another controller wrote it)."""


@dataclass(frozen=True, slots=True)
class StoredRollout:
    state: RolloutState
    revision: int


class RolloutStore(BucketStore):
    """Reads and writes rollout entries; every method may raise :class:`NatsUnavailable`."""

    def __init__(self, js: JetStreamContext, writer: StreamWriter, subjects: Subjects) -> None:
        """``writer`` writes the entries' updates (one per turn of a rollout's window:
        cheaper than the KV client's); ``js`` does the rest."""
        super().__init__(js, subjects.rollouts_bucket(), "nexec rollouts: how far each got")
        self._writer = writer
        self._subjects = subjects

    async def read(self, job_id: str) -> StoredRollout | None:
        """The rollout's entry; None when there is none (or it is unreadable: logged).

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        kv = self._kv()
        with nats_errors(f"reading rollout {job_id}"):
            try:
                entry = await kv.get(self._subjects.rollout_key(job_id))
            except nats.js.errors.KeyNotFoundError:
                return None
        try:
            state = decode_rollout_state(entry.value or b"")
        except WireError as exc:
            log.error(
                "rollout %r: entry unreadable: %s", job_id, exc, extra=log_fields(job_id=job_id)
            )
            return None
        return StoredRollout(state, entry.revision or 0)

    async def job_ids(self) -> list[str]:
        """The job id of every rollout with an entry.

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        kv = self._kv()
        with nats_errors("listing the rollouts"):
            try:
                return list(await kv.keys())
            except nats.js.errors.NoKeysError:
                return []

    async def create(self, job_id: str, state: RolloutState) -> int:
        """Write the first entry of a rollout; its revision.

        Raises:
            NatsUnavailable: not stored (StorageFull when the bucket is full).
        """
        kv = self._kv()
        with nats_errors("storing the rollout", when_full="the rollout was not stored"):
            return await kv.create(self._subjects.rollout_key(job_id), encode(state))

    async def update(self, job_id: str, state: RolloutState, revision: int) -> int:
        """Write ``state`` if the entry is still at ``revision``; the new revision.

        Raises:
            RolloutChanged: someone wrote it since. NatsUnavailable: not stored.
        """
        self._kv()  # the bucket is open
        headers = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value: str(revision)}
        subject = self._subjects.rollout_entry(job_id)
        with nats_errors(f"storing rollout {job_id}"):
            try:
                ack = await self._writer.write(subject, encode(state), headers=headers)
            except nats.js.errors.APIError as exc:
                if exc.err_code in WRONG_LAST_SEQUENCE:
                    raise RolloutChanged(str(exc)) from exc
                raise
        return ack.seq

    async def cancel(self, job_id: str, by: str) -> bool:
        """Record that ``by`` cancelled the rollout (no further host starts); False when
        it has no entry or has ended.

        Raises:
            NatsUnavailable: JetStream did not answer, or the entry kept changing.
        """
        for _ in range(CANCEL_TRIES):
            stored = await self.read(job_id)
            if stored is None or stored.state.ended:
                return False
            if stored.state.cancelled_by is not None:
                return True
            cancelled = msgspec.structs.replace(
                stored.state, cancelled_by=by, stopped=f"{ROLLOUT_CANCELLED_BY}{by}"
            )
            try:
                await self.update(job_id, cancelled, stored.revision)
                return True
            except RolloutChanged:
                continue
        raise NatsUnavailable(f"rollout {job_id}: the entry kept changing; cancel again")
