"""Publishing jobs and collecting the agents' replies.

One wildcard inbox subscription per controller receives every reply; each job
gets its own reply subject under it and a :class:`Collector` that completes as
soon as every expected agent answered. Whoever did not answer by the deadline
becomes a ``no_reply`` result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from controller.errors import NatsUnavailable
from schemas import ExecJob, ExecResult, ResultStatus, Subjects, Target, decode_result, encode

log = logging.getLogger("nexec.controller.dispatch")

ANY_PLACEHOLDER_HOSTNAME = "_any"


class Collector:
    """The replies to one job.

    ``expected`` names the agents that must answer; ``None`` means exactly one
    answer from any agent (``_any``). Replies from agents not expected (one
    that joined after the job was published) are kept too.
    """

    def __init__(self, job_id: str, expected: frozenset[str] | None) -> None:
        self.job_id = job_id
        self.expected = expected
        self.results: dict[str, ExecResult] = {}
        self.complete = asyncio.Event()

    def add(self, result: ExecResult) -> None:
        if result.hostname in self.results:
            log.warning("job %s: second reply from %s ignored", self.job_id, result.hostname)
            return
        self.results[result.hostname] = result
        if self.expected is None or self.expected.issubset(self.results):
            self.complete.set()

    def final_results(self, waited_s: float) -> list[ExecResult]:
        """Every reply, plus a ``no_reply`` result for each expected agent that did not answer."""
        missing = (
            sorted(self.expected - self.results.keys())
            if self.expected is not None
            else ([] if self.results else [ANY_PLACEHOLDER_HOSTNAME])
        )
        error = f"no reply within {waited_s:g}s"
        no_replies = [
            ExecResult(job_id=self.job_id, hostname=host, status=ResultStatus.NO_REPLY, error=error)
            for host in missing
        ]
        return sorted([*self.results.values(), *no_replies], key=lambda r: r.hostname)


class Dispatcher:
    """Sends jobs on NATS and gathers their results."""

    def __init__(self, subjects: Subjects) -> None:
        self._subjects = subjects
        self._collectors: dict[str, Collector] = {}
        self._inbox_prefix = ""
        self._nc: Client | None = None

    async def attach(self, nc: Client) -> None:
        """Subscribe the reply inbox on a connected client (once per process)."""
        self._inbox_prefix = nc.new_inbox()
        await nc.subscribe(f"{self._inbox_prefix}.*", cb=self._on_reply)
        self._nc = nc

    async def run(
        self, job: ExecJob, target: Target, expected: frozenset[str] | None, wait_s: float
    ) -> list[ExecResult]:
        """Publish ``job`` and wait up to ``wait_s`` seconds for the expected replies.

        Raises:
            NatsUnavailable: NATS is not connected, or the publish failed.
        """
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise NatsUnavailable("the controller is not connected to NATS")
        collector = Collector(job.job_id, expected)
        self._collectors[job.job_id] = collector
        try:
            try:
                await nc.publish(
                    self._subjects.exec_target(target),
                    encode(job),
                    reply=f"{self._inbox_prefix}.{job.job_id}",
                )
            except nats.errors.Error as exc:
                raise NatsUnavailable(f"publishing the job failed: {exc}") from exc
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(collector.complete.wait(), wait_s)
        finally:
            del self._collectors[job.job_id]
        return collector.final_results(wait_s)

    async def _on_reply(self, msg: Msg) -> None:
        job_id = msg.subject.rsplit(".", 1)[-1]
        try:
            result = decode_result(msg.data)
        except msgspec.DecodeError as exc:
            log.warning("job %s: malformed reply ignored: %s", job_id, exc)
            return
        collector = self._collectors.get(job_id)
        if collector is None:
            log.info("job %s: late reply from %s (%s)", job_id, result.hostname, result.status)
            return
        collector.add(result)
