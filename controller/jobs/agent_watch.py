"""Giving up, before the deadline, on a host whose agent fell silent mid-job.

Agents report the jobs they hold on ``<prefix>.running.<host>`` (one message per
agent per ``running_report_interval_s``, see :mod:`agentd.delivery.running_report`). Each
job's :class:`~controller.jobs.dispatch.Collector` keeps when it last heard of each host
that acknowledged it: the ack, then every report of that host listing the job. A
host that has no result and has not been heard of for ``agent_lost_after_s`` is
decided ``no_reply`` with :data:`AGENT_LOST`, but only when silence means the agent
and not NATS or this controller:

- this controller's connection is healthy, and has been for ``agent_lost_after_s``:
  connected, the JetStream probe answering, and a message to itself back within each
  check interval; a disconnection, a slow echo, or a check that ran late (the event
  loop stalled) starts every host's silence over from the next healthy check;
- and there is evidence that NATS delivers: another agent was heard (a report or a
  registry heartbeat) within the window, or the silent host's own registry heartbeats
  stopped too (they come from the same process: with a one-agent fleet, both of its
  channels silent on a healthy connection is the only evidence there can be).

- and running reports arrive on time: the subscription to them holds at most
  ``running_reports_pending_msgs`` and ``_bytes`` unread (beyond them, nats-py drops
  them: a slow consumer), so a report waits behind at most that many. A check that
  finds more than half of either held, or reports dropped since the last check (one
  host flooding its own running subject, say), starts every host's silence over, as
  a disconnection does: a host whose reports were dropped or are late is never lost.

Before giving a host up, the watch reads the host's result record: a result JetStream
took (the agent stops reporting the job then) while this controller's consumer of
results lags behind decides the host instead.

A report names its host by its subject (which the NATS permissions let only that host
publish); a payload naming another host is dropped and counted in :attr:`dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import (
    DEFAULT_SUB_PENDING_BYTES_LIMIT,
    DEFAULT_SUB_PENDING_MSGS_LIMIT,
    Subscription,
)

from controller.errors import NatsUnavailable
from controller.jobs.collector import Collector, collector_for
from controller.registry.view import Registry
from runtime.logs import log_fields
from schemas.decoding import WireError, decode_running_report_from
from schemas.messages import ExecResult
from schemas.subjects import Subjects
from schemas.untrusted import shown

log = logging.getLogger("nexec.controller.agent_watch")

AGENT_LOST = "agent lost while running"
DROPS_PER_LOG_LINE = 100
CHECKS_PER_WINDOW = 6
"""Checks (and round trips to the server) per ``agent_lost_after_s``."""

Recorded = Callable[[str, str], Awaitable[ExecResult | None]]
"""The host's recorded result of a job, if any; raises NatsUnavailable."""


@dataclass(frozen=True, slots=True)
class ReportLimits:
    """The bounds of the running reports held unread, and the count of those dropped."""

    pending_msgs: int
    pending_bytes: int
    dropped: Callable[[], int] = lambda: 0
    """Reports nats-py dropped so far (the connection's slow-consumer count)."""

    def backed_up(self, sub: Subscription, dropped_before: int) -> str | None:
        """Why reports may be late or lost now (more than half a limit held unread, or
        drops since ``dropped_before``); None when they arrive on time."""
        if (dropped := self.dropped() - dropped_before) > 0:
            return f"{dropped} running reports dropped (slow consumer)"
        if 2 * sub.pending_msgs > self.pending_msgs or 2 * sub.pending_bytes > self.pending_bytes:
            return f"{sub.pending_msgs} running reports ({sub.pending_bytes} B) held unread"
        return None


class AgentWatch:
    """Reads running reports and gives up on silent hosts; see the module docstring."""

    def __init__(
        self,
        subjects: Subjects,
        collectors: Mapping[str, Collector],
        registry: Registry,
        *,
        lost_after_s: float,
        connection_ok: Callable[[], bool],
        recorded: Recorded,
        reports_limits: ReportLimits | None = None,
    ) -> None:
        """``connection_ok``: whether the controller's link is connected and its probe
        answers (checked at every check, besides this watch's own round trip);
        ``recorded``: a host's result record of a job, read before giving it up;
        ``reports_limits``: the bounds of the report subscription (nats-py's defaults
        when None) and its drop count."""
        self._recorded = recorded
        self._limits = reports_limits or ReportLimits(
            DEFAULT_SUB_PENDING_MSGS_LIMIT, DEFAULT_SUB_PENDING_BYTES_LIMIT
        )
        self._reports: Subscription | None = None
        self._dropped_before = 0
        self._subjects = subjects
        self._collectors = collectors
        self._registry = registry
        self._lost_after_s = lost_after_s
        self._check_s = lost_after_s / CHECKS_PER_WINDOW
        self._connection_ok = connection_ok
        self._heard: dict[str, float] = {}
        """Host -> when its last valid report arrived (pruned after the window)."""
        self._healthy_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._echo_subject = ""
        self._echo_sent = 0
        self._echo_back = 0
        """Echoes sent, and the last one back (none sent yet: no check is healthy)."""
        self.dropped: Counter[str] = Counter()
        """Reports dropped, by reason."""
        self.reports = 0
        """Valid reports read."""
        self.withheld = 0
        """Checks that found a host silent for the window but decided nothing, since
        the connection or the fleet gave no evidence that the agent was lost."""
        self.lost = 0
        """Hosts given up as lost."""
        self.backed_up = 0
        """Checks that found the running reports late or dropped (silence starts over)."""

    async def attach(self, nc: Client) -> None:
        """Subscribe to every running report and start checking (once per process).

        Raises:
            nats.errors.Error: the subscription failed; call it again.
        """
        if self._task is not None:
            return
        self._reports = await nc.subscribe(
            self._subjects.running_all(),
            cb=self._on_report,
            pending_msgs_limit=self._limits.pending_msgs,
            pending_bytes_limit=self._limits.pending_bytes,
        )
        self._echo_subject = nc.new_inbox()
        await nc.subscribe(self._echo_subject, cb=self._on_echo)
        self._task = asyncio.create_task(self._check_loop(nc), name="agent watch")
        self._task.add_done_callback(_log_end)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.remove_done_callback(_log_end)
            task.cancel()
            await asyncio.wait({task})

    def restart_clocks(self) -> None:
        """The connection was lost: no silence before now counts."""
        if self._healthy_since is not None:
            log.info("agent watch: connection lost; every host's silence starts over")
        self._healthy_since = None

    async def connection_back(self) -> None:
        """The connection is back: silence counts again from the next healthy check."""
        self.restart_clocks()

    async def _on_report(self, msg: Msg) -> None:
        try:
            hostname = self._subjects.parse_running(msg.subject)
            report = decode_running_report_from(msg.data, hostname=hostname)
        except (ValueError, WireError) as exc:  # WireError is a ValueError: both listed
            self.dropped["invalid running report"] += 1
            count = self.dropped["invalid running report"]
            if count % DROPS_PER_LOG_LINE == 1:  # a flood of them is one line per 100
                log.warning(
                    "running report on %s dropped (%d so far): %s", shown(msg.subject), count, exc
                )
            return
        now = time.monotonic()
        self.reports += 1
        self._heard[hostname] = now
        for job_id in report.job_ids:
            collector = collector_for(self._collectors, job_id, hostname)
            if collector is not None:
                collector.heard(hostname, now)

    async def _check_loop(self, nc: Client) -> None:
        due = time.monotonic() + self._check_s
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            late_s = time.monotonic() - due
            if late_s > self._check_s:
                self._unhealthy(f"this controller stalled for {late_s:.1f}s")
            elif not self._connection_ok():
                self._unhealthy("NATS not connected, or JetStream not answering")
            elif self._echo_sent == 0 or self._echo_back < self._echo_sent:
                self._unhealthy(f"NATS did not echo a message within {self._check_s:g}s")
            elif (why := self._reports_backed_up()) is not None:
                self._unhealthy(why)
            elif self._healthy_since is None:
                self._healthy_since = time.monotonic()
            await self._check(time.monotonic())
            await self._send_echo(nc)
            due = time.monotonic() + self._check_s

    def _reports_backed_up(self) -> str | None:
        """Why running reports may be late or lost since the last check (counted in
        :attr:`backed_up`), or None."""
        if self._reports is None:
            return None
        why = self._limits.backed_up(self._reports, self._dropped_before)
        self._dropped_before = self._limits.dropped()
        self.backed_up += why is not None
        return why

    async def _send_echo(self, nc: Client) -> None:
        """One message to this controller's own echo subject: back by the next check, it
        proves that NATS delivered messages all along (a flush that times out cannot be
        used: nats-py then fails on the late PONG)."""
        if self._echo_back < self._echo_sent:
            return  # the last one is still on its way: its return decides
        self._echo_sent += 1
        try:
            await nc.publish(self._echo_subject, str(self._echo_sent).encode())
        except nats.errors.Error as exc:
            log.debug("agent watch echo not sent: %s", exc)

    async def _on_echo(self, msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            self._echo_back = max(self._echo_back, int(msg.data))

    def _unhealthy(self, why: str) -> None:
        if self._healthy_since is not None:
            log.info("agent watch: %s; every host's silence starts over", why)
        self._healthy_since = None

    async def _check(self, now: float) -> None:
        """Give up every silent host the evidence allows; forget old reports."""
        window_start = now - self._lost_after_s
        for host in [h for h, heard in self._heard.items() if heard < window_start]:
            del self._heard[host]
        for collector in list(self._collectors.values()):
            for host, heard_at in collector.silent(now, self._lost_after_s):
                if not self._may_decide(host, heard_at, now):
                    self.withheld += 1
                    continue
                await self._give_up(collector, host, now - heard_at)

    async def _give_up(self, collector: Collector, host: str, silent_s: float) -> None:
        """Give up ``host`` as lost, unless its result is recorded: then that decides it.
        When the record cannot be read, nothing is decided (NATS is in trouble)."""
        try:
            result = await self._recorded(collector.job_id, host)
        except NatsUnavailable as exc:
            self.withheld += 1
            log.info(
                "job %r: %r silent, its record unread: %s",
                collector.job_id,
                host,
                exc,
                extra=log_fields(job_id=collector.job_id, hostname=host),
            )
            return
        if result is not None:  # the results consumer lags behind: the record decides
            if host not in collector.results:
                collector.add_result(result)
            return
        self.lost += 1
        log.warning(
            "job %r: %r lost while running",
            collector.job_id,
            host,
            extra=log_fields(job_id=collector.job_id, hostname=host),
        )
        collector.give_up_lost(host, f"{AGENT_LOST}; not heard from for {silent_s:.1f}s")

    def _may_decide(self, host: str, heard_at: float, now: float) -> bool:
        """Whether the silence of ``host`` since ``heard_at`` means its agent is lost."""
        healthy_since = self._healthy_since
        if healthy_since is None or now - max(heard_at, healthy_since) < self._lost_after_s:
            return False
        window_start = now - self._lost_after_s
        if any(heard >= window_start for other, heard in self._heard.items() if other != host):
            return True
        if self._registry.heard_since(window_start, besides=host):
            return True
        own_heartbeat = self._registry.heard_at(host)
        return own_heartbeat is None or own_heartbeat < window_start


def _log_end(task: asyncio.Task[None]) -> None:
    """The checks run for the controller's lifetime: any end before ``close`` is an error
    (hosts are then waited for until the deadline, as without running reports)."""
    if task.cancelled():
        log.error("agent watch cancelled: silent hosts wait for the deadline")
    elif (exc := task.exception()) is not None:
        log.error("agent watch failed: silent hosts wait for the deadline", exc_info=exc)
