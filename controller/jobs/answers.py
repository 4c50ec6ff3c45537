"""Routing each ack, result and reply-subject message to the collector waiting for it
(:mod:`controller.jobs.dispatch` subscribes; :mod:`controller.jobs.collector` decides).

A host's identity comes from the subject, never from the payload: an ack or result
that names another job or host than its subject, or comes from a host the job was not
sent to (for ``_any``: a host that did not take it, the first to acknowledge), is
dropped, logged and counted in :attr:`AnswerRouter.dropped`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TypeVar

from nats.aio.msg import Msg

from controller.jobs.collector import Collector, collector_for
from runtime.logs import log_fields
from runtime.streamwriter import is_no_responders
from schemas.decoding import WireError, decode_ack_from, decode_reply, decode_result_from
from schemas.messages import ExecAck, ExecResult
from schemas.subjects import Subjects
from schemas.untrusted import shown

log = logging.getLogger("nexec.controller.dispatch")

AnswerT = TypeVar("AnswerT", ExecAck, ExecResult)

DROP_REASONS = tuple(
    [f"{kind} of a host the job was not sent to" for kind in ("ack", "result")]
    + [f"{kind} of a host that did not take the _any job" for kind in ("ack", "result")]
    + [f"invalid {kind}" for kind in ("ack", "result")]
    + ["answer on the reply subject"]
)
"""Every reason :attr:`AnswerRouter.dropped` counts (each listed from the start, at 0)."""


class AnswerRouter:
    """Hands the agents' answers to the collectors in ``collectors`` (by key, the
    dispatcher's live map), dropping what none of them may take."""

    def __init__(self, subjects: Subjects, collectors: Mapping[str, Collector]) -> None:
        self._subjects = subjects
        self._collectors = collectors
        self.dropped: Counter[str] = Counter(dict.fromkeys(DROP_REASONS, 0))
        """Acks and results dropped, by reason (another host's or job's, unexpected host,
        for ``_any`` a host that did not take it, malformed, an answer on the reply
        subject): :data:`DROP_REASONS`."""

    def _drop(self, job_id: str, hostname: str, reason: str, detail: object) -> None:
        """Count and log a dropped message; ``hostname`` may be untrusted (it is shown
        short), ``detail`` must not be (callers cut untrusted text with ``shown``)."""
        self.dropped[reason] += 1
        log.warning(
            "job %r: %s from %s dropped: %s",
            job_id,
            reason,
            shown(hostname),
            detail,
            extra=log_fields(job_id=job_id, hostname=shown(hostname)),
        )

    def _answer(
        self,
        msg: Msg,
        parse: Callable[[str], tuple[str, str]],
        decode: Callable[..., AnswerT],
        kind: str,
    ) -> tuple[Collector, AnswerT] | None:
        """The collector waiting for the host that ``msg``'s subject names, and what
        it said; None when no collector waits here, or when it was dropped (counted)."""
        try:
            job_id, hostname = parse(msg.subject)
        except ValueError:
            return None  # not a subject this subscription can carry
        collector = collector_for(self._collectors, job_id, hostname)
        if collector is None:
            return None  # another controller's job, or one whose collection ended
        if not collector.expects(hostname):
            if collector.expected is not None:
                self._drop(job_id, hostname, f"{kind} of a host the job was not sent to", "")
                return None
            if kind == "result":
                collector.rivals.add(hostname)
            taker = f"{shown(collector.taken_by or '')} took it"
            self._drop(job_id, hostname, f"{kind} of a host that did not take the _any job", taker)
            return None
        try:
            return collector, decode(msg.data, job_id=job_id, hostname=hostname)
        except WireError as exc:
            self._drop(job_id, hostname, f"invalid {kind}", exc)
            return None

    async def on_ack(self, msg: Msg) -> None:
        if answer := self._answer(msg, self._subjects.parse_ack, decode_ack_from, "ack"):
            collector, ack = answer
            collector.add_ack(ack)

    async def on_result(self, msg: Msg) -> None:
        parse = self._subjects.parse_host_record
        if answer := self._answer(msg, parse, decode_result_from, "result"):
            collector, result = answer
            collector.add_result(result)

    async def on_inbox(self, msg: Msg) -> None:
        """NATS's "no responders" status gives up every host at once. Anything else
        here was sent by an agent on the job's reply subject, which proves nothing of
        who sent it: logged (it may explain a ``no_reply``: a refused signature, or an
        agent too old for the ``record`` route) and dropped.

        Any agent that received the job may publish here, a status header included.
        So both are believed only when at most one agent receives the job (a host,
        ``_any``): for ``_all`` and labels, a forged status would give up hosts that
        run the command, and the delivery timeout decides instead."""
        try:
            job_id = self._subjects.parse_job_reply(msg.subject)
        except ValueError:
            return  # not a subject this subscription can carry
        collector = self._collectors.get(job_id)
        if collector is None:
            return
        if is_no_responders(msg):
            collector.no_responders()
            return
        try:
            reply = decode_reply(msg.data)
        except WireError as exc:
            self._drop(job_id, "?", "answer on the reply subject", exc)
            return
        said = shown(reply.error) if isinstance(reply, ExecResult) and reply.error else None
        detail = "an ack" if isinstance(reply, ExecAck) else said
        self._drop(job_id, reply.hostname, "answer on the reply subject", detail)
        if said is not None and collector.single_receiver:
            collector.note_unverified(reply.hostname, said)
