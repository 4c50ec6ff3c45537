"""Collecting one host's copy of a rollout's job without a task of its own.

A rollout publishes each host its own copy of the job
(:meth:`controller.jobs.dispatch.Dispatcher.start_copy`) and may have hundreds of
them under way over its life. Each copy is collected by the same rules as any job
(its :class:`~controller.jobs.collector.Collector`, the delivery timeout, the
deadline, the agent watch, the ``no_reply`` verdicts recorded before they are
told), but driven by callbacks: the collector's completion and two timers. No task
and no waiting future per host: a task per copy cost the controller several
event-loop turns per host, which is most of what a rollout cost above a plain job
(docs/performance.md, N7).

A copy is counted (``decided``) once, when it is decided. A rollout that stops
waiting for a copy (it cancels :attr:`CopyCollection.result`: its lease was lost to
another controller) stops its collection too: the controller that drives the
rollout then follows the host, decides it and counts it, and two collections of one
host never run in one controller (docs/operations.md, "Monitoring").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping

from controller.jobs.collector import Collector, release_route
from schemas.messages import ExecResult

Recorder = Callable[[list[ExecResult]], Awaitable[None]]
Decided = Callable[[ExecResult, int], None]
"""Counts a copy's outcome, decided this many nanoseconds after its collection began."""


class CopyCollection:
    """The collection of one host's copy; :attr:`result` is its outcome."""

    def __init__(
        self,
        collector: Collector,
        *,
        deadline_s: float,
        delivery_timeout_s: float,
        record: Recorder,
        routes: MutableMapping[str, Collector],
        live: set[CopyCollection],
        decided: Decided,
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """Start collecting a copy just published. ``record``: how the controller's
        ``no_reply`` verdicts are recorded; ``routes``: where the dispatcher finds the
        collector of an answer (``collector`` is taken out when collection ends);
        ``live``: the collections not settled (``self`` is in it until then);
        ``decided``: counts the copy's outcome, once, when it is decided;
        ``on_settled``: called right after :attr:`result` is settled (a rollout's
        driver woken without a done callback's extra event-loop turn)."""
        loop = asyncio.get_running_loop()
        self.collector = collector
        self.result: asyncio.Future[ExecResult] = loop.create_future()
        """The host's result, or the controller's ``no_reply`` verdict once recorded;
        cancelling it stops the collection (:meth:`cancel`) unless it was decided."""
        self._decided = decided
        self._on_settled = on_settled
        self._began_ns = time.perf_counter_ns()
        self._waited_s = deadline_s
        self._record = record
        self._routes = routes
        self._live = live
        self._collecting = True
        self._recording: asyncio.Task[None] | None = None
        reason = f"not acknowledged within {delivery_timeout_s:g}s"
        self._timers = (
            loop.call_later(delivery_timeout_s, collector.give_up_unacknowledged, reason),
            loop.call_later(deadline_s, self._end, True),
        )
        collector.on_done = self._end
        self.result.add_done_callback(self._given_up)
        live.add(self)

    def _end(self, deadline_passed: bool = False) -> None:
        """Every host decided, or the deadline passed: settle :attr:`result` (after
        recording the verdicts, if any)."""
        if not self._collecting:
            return
        self._stop_collecting()
        collected = self.collector.collected(
            deadline_passed=deadline_passed, waited_s=self._waited_s
        )
        self._decided(collected.results[0], time.perf_counter_ns() - self._began_ns)
        verdicts = self.collector.verdicts(collected)
        if verdicts:
            self._recording = asyncio.create_task(self._settle_after(verdicts))
        else:
            self._settle(collected.results[0])

    async def _settle_after(self, verdicts: list[ExecResult]) -> None:
        await self._record(verdicts)
        self._settle(verdicts[0])

    def _settle(self, result: ExecResult) -> None:
        self._live.discard(self)
        if not self.result.done():  # the rollout may have stopped waiting for it
            self.result.set_result(result)
            if self._on_settled is not None:
                self._on_settled()

    def _stop_collecting(self) -> None:
        self._collecting = False
        self.collector.on_done = None
        for timer in self._timers:
            timer.cancel()
        release_route(self._routes, self.collector)

    def _given_up(self, result: asyncio.Future[ExecResult]) -> None:
        """The rollout stopped waiting for this copy before it was decided: stop."""
        if result.cancelled() and self._collecting:
            self.cancel()

    def cancel(self) -> None:
        """Stop collecting and recording (on shutdown: the hosts not decided are left
        to their deadline, as for every job); :attr:`result` is cancelled."""
        if self._collecting:
            self._stop_collecting()
        if self._recording is not None:
            self._recording.cancel()
        self._live.discard(self)
        self.result.cancel()
