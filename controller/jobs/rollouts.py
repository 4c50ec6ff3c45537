"""The rollouts this controller drives, and taking over those another controller
stopped driving (its lease passed: killed, cut off, or stopped).

Every half of ``rollout_lease_s`` each controller lists the rollouts bucket and reads
the entries of rollouts that have not ended and that it does not drive; one whose
lease has passed it takes, with a write checked against the revision it read (of
several controllers trying at once, one wins), and drives from the recorded state
(:mod:`controller.jobs.rollout`). Entries of ended rollouts are remembered, so each is
read once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import msgspec

from controller.errors import NatsUnavailable
from controller.jobs.rollout import RolloutDeps, RolloutRun
from controller.jobs.rollout_store import RolloutChanged, StoredRollout
from runtime.logs import log_fields
from schemas.messages import ExecResult, JobRecord, RolloutState

log = logging.getLogger("nexec.controller.rollouts")


def new_driver_id() -> str:
    """An id for this controller process, as its rollout entries name it."""
    return uuid.uuid4().hex


class Rollouts:
    """The rollouts this controller drives, and the takeover of orphaned ones."""

    def __init__(self, deps: RolloutDeps) -> None:
        self._deps = deps
        self._runs: dict[str, RolloutRun] = {}
        self._ended: set[str] = set()
        """Job ids whose entries say they ended: never read again."""
        self._watch: asyncio.Task[None] | None = None
        self.taken_over = 0
        """Rollouts this controller took over from another."""
        self.took_over = asyncio.Event()
        """Set once this controller took a rollout over."""

    async def start(self, record: JobRecord, idempotency_entry: str | None = None) -> RolloutRun:
        """Store the rollout's first entry (this controller its driver, and the bucket
        key of its ``Idempotency-Key`` claim, if any), then drive it in the background.

        Raises:
            NatsUnavailable, StorageFull: the entry was not stored; nothing started.
        """
        job_id = record.job.job_id
        state = RolloutState(
            driver=self._deps.driver,
            lease_until=time.time() + self._deps.lease_s,
            idempotency_entry=idempotency_entry,
        )
        revision = await self._deps.store.create(job_id, state)
        return self._drive(record, StoredRollout(state, revision))

    def _drive(self, record: JobRecord, stored: StoredRollout) -> RolloutRun:
        job_id = record.job.job_id
        run = RolloutRun(self._deps, record, stored)
        self._runs[job_id] = run
        task = run.task = asyncio.create_task(run.drive(), name=f"rollout {job_id}")
        task.add_done_callback(lambda done: self._drove(job_id, done))
        return run

    def _drove(self, job_id: str, task: asyncio.Task[list[ExecResult]]) -> None:
        self._runs.pop(job_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error(
                "rollout %r: this controller stopped driving it: %s",
                job_id,
                error,
                extra=log_fields(job_id=job_id),
            )

    async def cancel(self, job_id: str, by: str) -> None:
        """Stop the rollout starting hosts: stored for whichever controller drives it,
        and at once when this one does.

        Raises:
            NatsUnavailable: the cancel was not stored.
        """
        run = self._runs.get(job_id)
        if run is not None:
            run.cancel(by)
        await self._deps.store.cancel(job_id, by)

    def follow(self) -> None:
        """Start looking for rollouts to take over (once; later calls do nothing)."""
        if self._watch is None:
            self._watch = asyncio.create_task(self._look_for_orphans(), name="rollout takeover")

    async def _look_for_orphans(self) -> None:
        while True:
            await asyncio.sleep(self._deps.lease_s / 2)  # the check interval
            try:
                await self.take_over_orphans()
            except NatsUnavailable as exc:
                log.warning("looking for rollouts to take over failed: %s", exc)

    async def take_over_orphans(self) -> None:
        """Take over every rollout not ended whose lease has passed.

        Raises:
            NatsUnavailable: JetStream did not answer.
        """
        store = self._deps.store
        for job_id in await store.job_ids():
            if job_id in self._runs or job_id in self._ended:
                continue
            stored = await store.read(job_id)
            if stored is None:
                continue
            if stored.state.ended:
                self._ended.add(job_id)
            elif stored.state.lease_until < time.time():
                await self._take_over(job_id, stored)

    async def _take_over(self, job_id: str, stored: StoredRollout) -> None:
        """Raises: NatsUnavailable."""
        record = await self._deps.job_store.load(job_id)
        if record is None or record.rollout is None or record.expected_hosts is None:
            self._ended.add(job_id)  # deleted, or past its retention: nothing to drive
            return
        taken = msgspec.structs.replace(
            stored.state, driver=self._deps.driver, lease_until=time.time() + self._deps.lease_s
        )
        try:
            revision = await self._deps.store.update(job_id, taken, stored.revision)
        except RolloutChanged:
            return  # another controller took it, or its driver renewed: not ours
        log.warning(
            "rollout %r: taken over from %r (%d hosts started, %d finished)",
            job_id, stored.state.driver, len(taken.started), len(taken.finished),
            extra=log_fields(job_id=job_id),
        )  # fmt: skip
        self.taken_over += 1
        self.took_over.set()
        self._drive(record, StoredRollout(taken, revision))

    async def close(self) -> None:
        """Stop driving and looking (on shutdown): hosts running keep their deadlines,
        and another controller takes the rollouts over once their leases pass."""
        tasks: list[asyncio.Task[Any]] = [run.task for run in self._runs.values() if run.task]
        if self._watch is not None:
            tasks.append(self._watch)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
