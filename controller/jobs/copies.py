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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping

from controller.jobs.collector import Collector
from schemas.messages import ExecResult

Recorder = Callable[[list[ExecResult]], Awaitable[None]]
Counter = Callable[[list[ExecResult], int], None]


class CopyCollection:
    """The collection of one host's copy; :attr:`result` is its outcome."""

    def __init__(
        self,
        collector: Collector,
        *,
        deadline_s: float,
        delivery_timeout_s: float,
        record: Recorder,
        count: Counter,
        routes: MutableMapping[str, Collector],
        live: set[CopyCollection],
        on_settled: Callable[[], None] | None = None,
    ) -> None:
        """Start collecting a copy just published. ``record``: how the controller's
        ``no_reply`` verdicts are recorded; ``count``: told the host's outcome and the
        nanoseconds its collection took, when :attr:`result` is settled (called
        directly: no done callback, which would cost an event-loop handle per host);
        ``routes``: where the dispatcher finds the collector of an answer
        (``collector`` is taken out when collection ends); ``live``: the collections
        not settled (``self`` is in it until then); ``on_settled``: called right
        after :attr:`result` is settled (a rollout's driver woken without a done
        callback's extra event-loop turn)."""
        loop = asyncio.get_running_loop()
        self._began_ns = time.perf_counter_ns()
        self._count = count
        self._on_settled = on_settled
        self.collector = collector
        self.result: asyncio.Future[ExecResult] = loop.create_future()
        """The host's result, or the controller's ``no_reply`` verdict once recorded."""
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
            self._count([result], time.perf_counter_ns() - self._began_ns)
            if self._on_settled is not None:
                self._on_settled()

    def _stop_collecting(self) -> None:
        self._collecting = False
        self.collector.on_done = None
        for timer in self._timers:
            timer.cancel()
        self._routes.pop(self.collector.key, None)

    def cancel(self) -> None:
        """Stop collecting and recording (on shutdown: the hosts not decided are left
        to their deadline, as for every job); :attr:`result` is cancelled."""
        if self._collecting:
            self._stop_collecting()
        if self._recording is not None:
            self._recording.cancel()
        self._live.discard(self)
        self.result.cancel()
