"""Errors the controller answers with, each mapped to one HTTP status.

    ApiError                 any error with a status, a title and details
    ├── BadRequest           400 invalid payload or target syntax
    ├── Unauthorized         401 missing, unknown (or revoked) or expired API key
    ├── Forbidden            403 key lacks the permission or the target
    ├── NotFound             404 no registered agent matches / no such route or job
    ├── Conflict             409 Idempotency-Key reused with another request
    ├── PayloadTooLarge      413 request body over the limit
    ├── NatsUnavailable      503 NATS unreachable
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

    def __init__(self, details: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(details)
        self.details = details
        self.headers = headers or {}


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


class Conflict(ApiError):
    status = 409
    title = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    title = "request body too large"


class RateLimited(ApiError):
    status = 429
    title = "too many requests"


class NatsUnavailable(ApiError):
    status = 503
    title = "NATS unavailable"


class ShuttingDown(ApiError):
    status = 503
    title = "shutting down"
