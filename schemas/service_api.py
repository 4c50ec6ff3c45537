"""The answers of the NATS service API (ADR-32) that agents and controllers give on the
``$SRV`` subjects (:meth:`schemas.subjects.Subjects.service_requests_of`).

Their shape is NATS's, not nexec's: the ``type`` tags are ADR-32's
(``io.nats.micro.v1.*``), and every field ADR-32 lists is always present (``nats
micro`` and nats-py's ``nats.micro`` parsers read them without defaults). Durations
are integer nanoseconds; ``started`` is RFC 3339 in UTC.
"""

from __future__ import annotations

from typing import Any

import msgspec

PING_RESPONSE = "io.nats.micro.v1.ping_response"
INFO_RESPONSE = "io.nats.micro.v1.info_response"
STATS_RESPONSE = "io.nats.micro.v1.stats_response"


class EndpointInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One endpoint as ``INFO`` describes it."""

    name: str
    subject: str
    queue_group: str
    """Empty: nexec's endpoints are plain subscriptions (broadcast subjects stay broadcast)."""
    metadata: dict[str, str]


class EndpointStats(msgspec.Struct, frozen=True, kw_only=True):
    """One endpoint's counts as ``STATS`` reports them."""

    name: str
    subject: str
    queue_group: str
    num_requests: int
    num_errors: int
    last_error: str
    """The last error, or "" when there has been none."""
    processing_time: int
    """Nanoseconds spent on the endpoint's requests, in total."""
    average_processing_time: int
    """``processing_time // num_requests`` (0 without requests)."""
    data: dict[str, Any]
    """nexec's own counters of the endpoint (docs/operations.md, Service discovery)."""


class PingResponse(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=PING_RESPONSE):
    name: str
    id: str
    version: str
    metadata: dict[str, str]


class InfoResponse(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=INFO_RESPONSE):
    name: str
    id: str
    version: str
    metadata: dict[str, str]
    description: str
    endpoints: list[EndpointInfo]


class StatsResponse(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=STATS_RESPONSE
):
    name: str
    id: str
    version: str
    metadata: dict[str, str]
    started: str
    """When the instance started: RFC 3339, UTC, microseconds (``...T13:29:08.123456Z``)."""
    endpoints: list[EndpointStats]
