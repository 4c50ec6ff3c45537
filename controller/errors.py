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
    └── ShuttingDown         503 the controller is draining (SIGTERM)

The middleware in :mod:`controller.middleware` turns each into
``{"error", "details", "code"}``; anything else becomes a 500 whose
traceback goes to the log only.
"""

from __future__ import annotations

from typing import ClassVar


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


class ShuttingDown(ApiError):
    status = 503
    title = "shutting down"
