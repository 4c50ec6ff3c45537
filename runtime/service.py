"""The NATS service API (ADR-32) of both daemons: answers to ``$SRV.PING``, ``$SRV.INFO``
and ``$SRV.STATS``, so that ``nats micro ls`` finds every agent and controller.

nats-py's ``nats.micro`` is not used: its endpoints subscribe in a queue group, which
would make the broadcast job subjects (``all``, labels) load-balanced. Here the job
subscriptions stay the daemon's own; :class:`ServiceResponder` only answers the
discovery subjects, each with a plain subscription (no queue group: every instance
answers), and reports what the daemon counts (:class:`EndpointCounts`).
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import pydantic
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from runtime.connection import drain_subscriptions
from runtime.ratelimit import RateLimiter
from runtime.settings import setting
from schemas.service_api import (
    EndpointInfo,
    EndpointStats,
    InfoResponse,
    PingResponse,
    StatsResponse,
)
from schemas.subjects import Subjects

log = logging.getLogger("nexec.service")

PENDING_MSGS_LIMIT = 256
"""Discovery requests held per ``$SRV`` subscription before NATS's slow-consumer drop
(nats-py's default is 512 Ki messages: a flood would be held in memory)."""
PENDING_BYTES_LIMIT = 64 * 1024
"""Bytes held per ``$SRV`` subscription (nats-py's default: 128 MiB each, nine
subscriptions). A discovery request is empty; one with a large body is dropped."""


class ServiceSettings(pydantic.BaseModel):
    """How much of the NATS service API (ADR-32) a process answers; shared by the
    controller's and the agent's settings."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    service_answers_per_s: float = setting(
        10.0,
        ge=0,
        help="discovery ($SRV) requests answered per second on average; 0: no limit",
        details="The rest are dropped unanswered (docs/security.md, Service discovery)",
    )
    service_answers_burst: int = setting(
        50, ge=1, help="discovery requests answered at once above service_answers_per_s"
    )


@dataclass(frozen=True, slots=True)
class EndpointCounts:
    """What one endpoint counted until now: ADR-32's ``num_requests``, ``num_errors``,
    ``last_error`` and ``processing_time`` (nanoseconds), and the daemon's own counters
    (``data``: JSON-encodable values)."""

    requests: int
    errors: int
    last_error: str
    processing_ns: int
    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as discovery shows it; ``counts`` is read on each ``STATS`` request."""

    name: str
    subject: str
    counts: Callable[[], EndpointCounts]
    metadata: Mapping[str, str] = field(default_factory=dict)

    def info(self) -> EndpointInfo:
        return EndpointInfo(
            name=self.name, subject=self.subject, queue_group="", metadata=dict(self.metadata)
        )

    def stats(self) -> EndpointStats:
        counts = self.counts()
        requests = counts.requests
        return EndpointStats(
            name=self.name,
            subject=self.subject,
            queue_group="",
            num_requests=requests,
            num_errors=counts.errors,
            last_error=counts.last_error,
            processing_time=counts.processing_ns,
            average_processing_time=counts.processing_ns // requests if requests else 0,
            data=dict(counts.data),
        )


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    """Who answers: ADR-32's name (a subject token), instance id, SemVer version."""

    name: str
    instance_id: str
    version: str
    description: str
    metadata: Mapping[str, str]

    def common(self) -> dict[str, Any]:
        """The fields every answer starts with: ``name``, ``id``, ``version``, ``metadata``."""
        return {
            "name": self.name,
            "id": self.instance_id,
            "version": self.version,
            "metadata": dict(self.metadata),
        }


def rfc3339(unix_s: float) -> str:
    """``unix_s`` in RFC 3339, UTC, with microseconds (what ``nats micro`` shows)."""
    moment = datetime.datetime.fromtimestamp(unix_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ServiceResponder:
    """Answers the ``$SRV`` subjects of one service instance on ``nc``.

    :meth:`start` once connected (subscriptions survive reconnects); :meth:`stop`
    drains them, bounded; both are safe to call twice.
    """

    def __init__(
        self,
        subjects: Subjects,
        identity: ServiceIdentity,
        endpoints: list[Endpoint],
        *,
        started_at: float,
        timeout_s: float,
        limits: ServiceSettings,
    ) -> None:
        """``timeout_s`` bounds each wait for the server (the subscribe's flush, the
        drain); ``limits``: how many requests are answered."""
        self._subjects = subjects
        self._identity = identity
        self._endpoints = endpoints
        self._started = rfc3339(started_at)
        self._timeout_s = timeout_s
        self._subscriptions: dict[str, Subscription] = {}
        self._encoder = msgspec.json.Encoder()
        self._nc: Client | None = None
        self._limiter = RateLimiter(limits.service_answers_per_s, limits.service_answers_burst)
        self.answered = 0
        self.refused = 0
        """Requests dropped unanswered: over the rate limit, or their reply subject one
        of nexec's or NATS's own."""
        self._answers: dict[str, Callable[[], msgspec.Struct]] = {
            "PING": self.ping,
            "INFO": self.info,
            "STATS": self.stats,
        }

    async def start(self, nc: Client) -> None:
        """Subscribe to every discovery subject of this instance (those not subscribed
        yet) and wait until the server has them.

        Raises:
            nats.errors.Error: a subscribe failed, or the server did not answer within
                ``timeout_s`` (call it again).
        """
        self._nc = nc
        identity = self._identity
        for verb, subject in self._subjects.service_requests_of(
            identity.name, identity.instance_id
        ):
            if subject not in self._subscriptions:  # an earlier start failed midway
                respond = functools.partial(self._respond, answer=self._answers[verb])
                self._subscriptions[subject] = await nc.subscribe(
                    subject,
                    cb=respond,
                    pending_msgs_limit=PENDING_MSGS_LIMIT,
                    pending_bytes_limit=PENDING_BYTES_LIMIT,
                )
        await nc.flush(timeout=max(1, round(self._timeout_s)))

    async def stop(self) -> None:
        """Stop answering (the requests already delivered are answered). A server that
        does not answer within ``timeout_s`` is logged, never raised."""
        subscriptions, self._subscriptions = self._subscriptions, {}
        if not await drain_subscriptions(subscriptions.values(), self._timeout_s):
            log.warning("service %s: discovery subscriptions not drained", self._identity.name)

    def ping(self) -> PingResponse:
        return PingResponse(**self._identity.common())

    def info(self) -> InfoResponse:
        return InfoResponse(
            **self._identity.common(),
            description=self._identity.description,
            endpoints=[endpoint.info() for endpoint in self._endpoints],
        )

    def stats(self) -> StatsResponse:
        return StatsResponse(
            **self._identity.common(),
            started=self._started,
            endpoints=[endpoint.stats() for endpoint in self._endpoints],
        )

    async def _respond(self, msg: Msg, *, answer: Callable[[], msgspec.Struct]) -> None:
        """Answer on the request's reply subject, within the rate limit; never on one of
        nexec's or NATS's own subjects (a requester could name one as its "reply");
        never raises."""
        reply = msg.reply
        if not reply or self._nc is None:
            return
        if self._subjects.is_nexec_subject(reply) or self._limiter.retry_after_s(""):
            self.refused += 1
            return
        try:
            await self._nc.publish(reply, self._encoder.encode(answer()))
        except nats.errors.Error as exc:
            log.warning("service %s: answer not sent: %s", self._identity.name, exc)
            return
        self.answered += 1
