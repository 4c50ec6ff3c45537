"""Errors the controller answers with, each mapped to one HTTP status.

    ApiError                 any error with a status, a title and details
    ├── BadRequest           400 invalid payload or target syntax
    ├── Unauthorized         401 missing, unknown (or revoked) or expired API key
    ├── Forbidden            403 key lacks the permission or the target
    ├── NotFound             404 no registered agent matches / no such route or job
    ├── RequestTimeout       408 the body did not arrive within http_read_timeout_s
    ├── Conflict             409 Idempotency-Key reused with another request
    ├── PayloadTooLarge      413 request body over the limit
    ├── UnsupportedMediaType 415 a body that is not Content-Type: application/json
    ├── ClientDisconnected   499 the client went away mid-request (recorded, never sent)
    ├── NatsUnavailable      503 NATS unreachable
    ├── StorageFull          503 a JetStream stream or bucket has no room left (max_bytes)
    ├── TooManyConnections   503 the connection is over http_max_connections
    ├── FleetPaused          503 the fleet is paused (POST /fleet/pause): no exec or shell
    └── ShuttingDown         503 the controller is draining (SIGTERM)

The middleware in :mod:`controller.http.middleware` turns each into
``{"error", "details", "code"}``; anything else becomes a 500 whose
traceback goes to the log only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import nats.errors

from runtime.jetstream import is_storage_full


class ApiError(Exception):
    """An error with a safe message for the caller."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "internal error"

    def __init__(
        self, details: str, *, headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        """``close``: close the connection after the answer (``Connection: close``)."""
        super().__init__(details)
        self.details = details
        self.headers = headers or {}
        self.close = close


class BadRequest(ApiError):
    status = 400
    title = "invalid request"


class Unauthorized(ApiError):
    status = 401
    title = "unauthorized"


class Forbidden(ApiError):
    status = 403
    title = "forbidden"


class NotFound(ApiError):
    status = 404
    title = "not found"


class RequestTimeout(ApiError):
    status = 408
    title = "request timeout"


class Conflict(ApiError):
    status = 409
    title = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    title = "request body too large"


class UnsupportedMediaType(ApiError):
    status = 415
    title = "unsupported media type"


class ClientDisconnected(ApiError):
    """Not an answer anyone reads: the status the audit trail and the access log get
    (nginx's 499) when the client closed its connection before the request was read."""

    status = 499
    title = "client disconnected"


class RateLimited(ApiError):
    status = 429
    title = "too many requests"


class NatsUnavailable(ApiError):
    status = 503
    title = "NATS unavailable"


class StorageFull(ApiError):
    """JetStream refused a write for want of room: a stream at its ``max_bytes``, or
    the server's or account's storage exhausted. Nothing was run."""

    status = 503
    title = "storage full"


class TooManyConnections(ApiError):
    status = 503
    title = "too many connections"


class FleetPaused(ApiError):
    """Exec and shell while the fleet is paused (``POST /fleet/pause``)."""

    status = 503
    title = "fleet paused"


class ShuttingDown(ApiError):
    status = 503
    title = "shutting down"


@contextlib.contextmanager
def nats_errors(operation: str, *, when_full: str | None = None) -> Iterator[None]:
    """Translate what NATS raises inside the block into the controller's errors: the
    one place where NATS and timeout errors become answers.

    ``operation`` names what was tried (``"recording the job"``); with ``when_full``,
    a write refused for want of room is :class:`StorageFull` with that text instead.

    Raises:
        NatsUnavailable: ``"<operation> failed: <reason>"``, for any NATS error or
            timeout raised inside.
        StorageFull: ``"<when_full>: <reason>"``, for a full store when ``when_full``
            is given.
    """
    try:
        yield
    except (nats.errors.Error, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        if when_full is not None and is_storage_full(exc):
            raise StorageFull(f"{when_full}: {reason}") from exc
        raise NatsUnavailable(f"{operation} failed: {reason}") from exc
