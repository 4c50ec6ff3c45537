"""Driving a rollout: a few hosts at a time, in hostname order, stopping when too many
failed (docs/jobs.md, "Rollouts").

Each host gets its own copy of the job (same job id, the host as target, its own
deadline and ``deliver_by`` counted from its own start), published and collected by
the dispatcher like any job on one host: acks, the delivery timeout, the agent
watch, the ``no_reply`` verdicts are the same rules. The rollout's progress lives in
its entry of the rollouts bucket (:mod:`controller.jobs.rollout_store`), written under
this controller's lease (:mod:`controller.jobs.rollout_entry`); a host is written
there as started before its copy is published. The hosts a turn of the window
starts are written in one write, and the hosts that finished are written with the
next write (their results are in the results stream already, where a takeover reads
them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import msgspec

from controller.errors import NatsUnavailable, StorageFull
from controller.fleet_pause import FleetPauseState
from controller.jobs.dispatch import Dispatcher
from controller.jobs.host_slots import HostSlotsStore, lease_id
from controller.jobs.idempotency import IdempotencyKeys
from controller.jobs.outcome import ROLLOUT_CANCELLED_BY
from controller.jobs.records import JobStore
from controller.jobs.rollout_entry import LeaseLost, RolloutEntry
from controller.jobs.rollout_host import follow_host, start_host
from controller.jobs.rollout_plan import failures_stop, host_failed, last_started
from controller.jobs.rollout_store import RolloutStore, StoredRollout
from controller.jobs.verdicts import VerdictRecorder
from runtime.logs import log_fields
from schemas.messages import ExecResult, JobRecord, ResultStatus, RolloutState

log = logging.getLogger("nexec.controller.rollouts")

FLEET_WAIT_S = 3600.0
"""How long one wait for a paused fleet lasts before it is started again."""


@dataclass(frozen=True, slots=True)
class RolloutDeps:
    """What a rollout run works with."""

    dispatcher: Dispatcher
    store: RolloutStore
    job_store: JobStore
    verdicts: VerdictRecorder
    fleet: FleetPauseState
    delivery_margin_s: float
    slots: HostSlotsStore
    """The host slots of keys with ``max_hosts``."""
    slots_retry_s: float
    """How often a rollout waiting for a host slot looks again."""
    driver: str
    """This controller's instance id, as written in the entries it drives."""
    lease_s: float
    idempotency: IdempotencyKeys
    """Where a rollout's ``Idempotency-Key`` claim is written again at its end."""


class RolloutRun:
    """One rollout, driven by this controller."""

    def __init__(self, deps: RolloutDeps, record: JobRecord, stored: StoredRollout) -> None:
        assert record.rollout is not None and record.expected_hosts is not None
        self._deps = deps
        self.job = record.job
        self.plan = record.rollout
        self.hosts = sorted(record.expected_hosts)
        self._entry = RolloutEntry(
            deps.store,
            stored,
            job_id=self.job.job_id,
            driver=deps.driver,
            lease_s=deps.lease_s,
            write_until=self.job.deadline,
        )
        self.results: dict[str, ExecResult] = {}
        self._running: dict[asyncio.Future[ExecResult], str] = {}
        self._woken: asyncio.Future[None] | None = None
        """What :meth:`_settle` waits on, while it waits: settled by a host finishing, a
        cancel, or its timeout."""
        self._cancelled_unseen = False
        """A cancel came while :meth:`_settle` was not waiting: its next call returns."""
        self._local_stop: str | None = None
        self._last_start = last_started(stored.state, self.job.timeout_s + deps.delivery_margin_s)
        """When (monotonic) the last host started: after a takeover, the last recorded."""
        self.task: asyncio.Task[list[ExecResult]] | None = None
        """The task driving it (its result: every host's), once started."""

    @property
    def failures(self) -> int:
        return self._entry.failures

    def stop_reason(self) -> str | None:
        """Why no further host starts; None while the rollout goes on."""
        if self._local_stop is not None:
            return self._local_stop
        if self._entry.state.stopped is not None:
            return self._entry.state.stopped
        return failures_stop(self.failures, self.plan.max_failures)

    def cancel(self, by: str) -> None:
        """Stop starting hosts at once (the cancel is stored by whoever received it)."""
        self._local_stop = f"{ROLLOUT_CANCELLED_BY}{by}"
        self._cancelled_unseen = self._woken is None
        self._wake()

    def _wake(self, _: object = None) -> None:
        """End the wait of :meth:`_settle`, if it waits."""
        if self._woken is not None and not self._woken.done():
            self._woken.set_result(None)

    def _add_running(
        self, running: asyncio.Future[ExecResult], host: str, *, wakes: bool = False
    ) -> None:
        """Wait for ``host``'s ``running``; unless it ``wakes`` the driver itself once
        done (a copy published here: :meth:`_publish`), by a done callback."""
        self._running[running] = host
        if not wakes:
            running.add_done_callback(self._wake)

    def snapshot(self) -> list[ExecResult]:
        """The results so far, sorted by hostname."""
        return sorted(self.results.values(), key=lambda result: result.hostname)

    async def drive(self) -> list[ExecResult]:
        """Start every host in turn, wait for those running, skip the rest once stopped;
        end early, leaving the rest to it, when another controller took over.

        Raises:
            NatsUnavailable: the rollout's entry could not be written for the whole
                time the rollout had left (logged; hosts not started stay unrecorded).
        """
        try:
            return await self._drive()
        except LeaseLost:
            log.warning(
                "rollout %r: taken over by another controller",
                self.job.job_id,
                extra=log_fields(job_id=self.job.job_id),
            )
            for task in self._running:
                task.cancel()
            return self.snapshot()

    async def _drive(self) -> list[ExecResult]:
        """Raises: LeaseLost, NatsUnavailable."""
        for host, deadline in self._entry.state.started.items():
            if host not in self._entry.state.finished:  # started by a controller before this one
                deps = self._deps
                following = follow_host(
                    deps.dispatcher, deps.job_store, self.job.job_id, host, deadline
                )
                self._add_running(asyncio.ensure_future(following), host)
        waiting = [host for host in self.hosts if host not in self._entry.state.started]
        while waiting and await self._ready():
            size = self._turn_size()
            await self._start(waiting[:size])
            waiting = waiting[size:]
        await self._cancel_again()
        while self._running:
            await self._settle(None)
        return await self._end()

    async def _cancel_again(self) -> None:
        """A cancelled rollout sends the agents' cancel again once it knows: a host
        recorded as started just before the cancel was stored may have been published
        after the first one went out."""
        reason = self.stop_reason() or ""
        if self._running and reason.startswith(ROLLOUT_CANCELLED_BY):
            try:
                await self._deps.dispatcher.cancel(
                    self.job.job_id, reason[len(ROLLOUT_CANCELLED_BY) :]
                )
            except NatsUnavailable as exc:
                log.warning(
                    "rollout %r: the cancel was not sent again: %s",
                    self.job.job_id,
                    exc,
                    extra=log_fields(job_id=self.job.job_id),
                )

    async def _ready(self) -> bool:
        """Wait for a free slot, then the pause after the last start, then a running
        fleet (at most until a host started later would outlive the rollout's deadline:
        :meth:`_host_deadline` then stops it, out of time); False once it stopped."""
        while len(self._running) >= self.plan.batch_size and self.stop_reason() is None:
            await self._settle(None)
        if self._last_start is not None and self.plan.pause_s > 0:
            start_at = self._last_start + self.plan.pause_s
            while (left := start_at - time.monotonic()) > 0 and self.stop_reason() is None:
                await self._settle(left)  # a scheduled pause, not a synchronisation
        await self._fleet_running()
        return self.stop_reason() is None

    async def _fleet_running(self) -> None:
        """Wait while the fleet is paused and the rollout goes on, at most until a host
        started later would outlive the rollout's deadline (:meth:`_host_deadline` then
        stops it, out of time).

        Raises:
            LeaseLost, NatsUnavailable: from storing its state while waiting.
        """
        fleet = self._deps.fleet
        latest_start = self.job.deadline - self.job.timeout_s - self._deps.delivery_margin_s
        while fleet.paused is not None and self.stop_reason() is None:
            if (left := latest_start - time.time()) <= 0:
                break
            resumed = fleet.wait_until(lambda paused: paused is None, FLEET_WAIT_S)
            await self._settle(left, resumed)

    def _turn_size(self) -> int:
        """How many hosts start together now: every free place in the window, or one
        at a time with ``pause_s`` or ``max_hosts`` (each waits for its turn)."""
        if self.plan.pause_s > 0 or self.plan.max_hosts is not None:
            return 1
        return max(1, self.plan.batch_size - len(self._running))

    async def _settle(self, timeout_s: float | None, also: Awaitable[None] | None = None) -> None:
        """Wait at most ``timeout_s`` for a running host to finish, a cancel, or ``also``;
        record every host that finished, and renew the lease when it is due. The hosts
        wake it through their futures' callbacks: no task or waiter per host or call.

        Raises:
            LeaseLost, NatsUnavailable.
        """
        renew_in = self._entry.renew_in()
        timeout_s = renew_in if timeout_s is None else min(timeout_s, renew_in)
        if not self._cancelled_unseen and not any(task.done() for task in self._running):
            await self._wait_for_wake(timeout_s, also)
        self._cancelled_unseen = False
        for task in [task for task in self._running if task.done()]:
            await self._finish(task)
        await self._entry.renew_if_due()

    async def _wait_for_wake(self, timeout_s: float, also: Awaitable[None] | None) -> None:
        """Wait until :meth:`_wake` is called, ``also`` is done, or ``timeout_s`` passed."""
        loop = asyncio.get_running_loop()
        self._woken = loop.create_future()
        timer = loop.call_later(timeout_s, self._wake)
        extra = None if also is None else asyncio.ensure_future(also)
        if extra is not None:
            extra.add_done_callback(self._wake)
        try:
            await self._woken
        finally:
            self._woken = None
            timer.cancel()
            if extra is not None:
                extra.cancel()

    async def _start(self, hosts: list[str]) -> None:
        """Take one of the key's host slots for each host (when it has ``max_hosts``),
        record them all as started in one write, then publish each one's copy, in
        hostname order, without waiting for one another (they go out together).

        Raises:
            LeaseLost, NatsUnavailable: from storing its state (the slots given back).
        """
        deadlines: dict[str, float] = {}
        for host in hosts:
            deadline = await self._host_deadline(host)
            if deadline is None:
                break
            deadlines[host] = deadline
        if not deadlines:
            return

        def started(state: RolloutState) -> RolloutState | None:
            if state.stopped is not None:
                return None
            return msgspec.structs.replace(state, started={**state.started, **deadlines})

        try:
            recorded = await self._entry.write(started)
        except (LeaseLost, NatsUnavailable):
            await self._give_back(list(deadlines))
            raise
        if not recorded:
            await self._give_back(list(deadlines))
            return
        for host, deadline in deadlines.items():
            await self._publish(host, deadline)

    async def _publish(self, host: str, deadline: float) -> None:
        """Publish ``host``'s copy of the job; it runs until its future is settled."""
        now = time.time()
        copy = msgspec.structs.replace(
            self.job,
            target=host,
            created_at=now,
            deadline=deadline,
            deliver_by=now + self.plan.delivery_timeout_s,
        )
        self._last_start = time.monotonic()
        deps, timeout_s = self._deps, self.plan.delivery_timeout_s
        running = await start_host(
            deps.dispatcher,
            deps.verdicts,
            copy,
            delivery_timeout_s=timeout_s,
            on_settled=self._wake,
        )
        self._add_running(running, host, wakes=True)

    async def _host_deadline(self, host: str) -> float | None:
        """The deadline of ``host``'s copy if it starts now, once one of the key's host
        slots is taken for it (waiting, while the rollout goes on, for one to come
        free, and for a paused fleet to run again: a slot freed during a pause starts
        nothing); None when the rollout stopped or ran out of time meanwhile.

        Raises:
            LeaseLost, NatsUnavailable: from storing the rollout's state while waiting.
        """
        job, slots = self.job, self._deps.slots
        while self.stop_reason() is None:
            await self._fleet_running()
            if self.stop_reason() is not None:
                break
            deadline = time.time() + job.timeout_s + self._deps.delivery_margin_s
            if deadline > job.deadline:  # a long fleet pause or wait ate the rollout's time
                self._local_stop = "rollout stopped: out of time (its worst case has passed)"
                return None
            if self.plan.max_hosts is None:
                return deadline
            lease = {lease_id(job.job_id, host): deadline}
            try:
                if await slots.take(job.caller, self.plan.max_hosts, lease):
                    return deadline
            except (NatsUnavailable, StorageFull) as exc:
                log.warning(
                    "rollout %r: no host slot taken yet: %s",
                    job.job_id,
                    exc,
                    extra=log_fields(job_id=job.job_id, key_name=job.caller),
                )
            await self._settle(self._deps.slots_retry_s)  # a slot may come free elsewhere
        return None

    async def _give_back(self, hosts: list[str]) -> None:
        """Give back the slots of ``hosts``, if the key has ``max_hosts``; never raises."""
        if self.plan.max_hosts is not None:
            leases = [lease_id(self.job.job_id, host) for host in hosts]
            await self._deps.slots.give_back(self.job.caller, leases)

    async def _finish(self, task: asyncio.Future[ExecResult]) -> None:
        host = self._running.pop(task)
        result = task.result()
        self.results[host] = result
        await self._give_back([host])
        self._entry.finished(host, host_failed(result))  # stored with the next write

    async def _end(self) -> list[ExecResult]:
        """Skip every host not started (the reason stored first, so no controller
        starts one after; then recorded on each one's result subject), keep its records
        from now, mark the rollout ended; every host's result, sorted.

        Raises:
            LeaseLost, NatsUnavailable.
        """
        reason = self.stop_reason() or "rollout stopped"
        not_started = [host for host in self.hosts if host not in self._entry.state.started]
        if not_started:
            await self._entry.write(
                lambda state: msgspec.structs.replace(state, stopped=state.stopped or reason)
            )
            reason = self._entry.state.stopped or reason
            skipped = [
                ExecResult(
                    job_id=self.job.job_id,
                    hostname=host,
                    status=ResultStatus.SKIPPED,
                    error=reason,
                )
                for host in not_started
            ]
            await self._deps.job_store.record_where_absent(self.job.job_id, skipped)
            self._deps.dispatcher.counters.decided(skipped)
            self.results.update((result.hostname, result) for result in skipped)
        await self._keep_from_now()
        await self._entry.write(lambda state: msgspec.structs.replace(state, ended=True))
        return self.snapshot()

    async def _keep_from_now(self) -> None:
        """Write the job record, every host's result and the idempotency claim again, so
        that they last ``job_retention_s`` from the end (before ``ended`` is stored: a
        takeover ends it again); never raises."""
        deps = self._deps
        await deps.job_store.keep_from_now(self.job.job_id, self.hosts, self.results)
        if self._entry.state.idempotency_entry is not None:
            await deps.idempotency.keep_from_now(self._entry.state.idempotency_entry)
