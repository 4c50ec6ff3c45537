"""The exceptions of the nexec client, all under :class:`NexecError`.

::

    NexecError                      anything the client raises
    ├── APIError                    the controller refused: status, error, details
    │   ├── BadRequest              400 invalid body, target or query parameter
    │   ├── Unauthorized            401 no key, an unknown, revoked or expired key
    │   ├── Forbidden               403 the key lacks the permission or the target
    │   ├── NotFound                404 no live agent matches; unknown job
    │   ├── RequestTimeout          408 the body did not arrive in time
    │   ├── Conflict                409 Idempotency-Key reused; cancel of an ended job
    │   ├── PayloadTooLarge         413 body larger than the controller's max_body_bytes
    │   ├── UnsupportedMediaType    415 a body not sent as application/json
    │   ├── TooManyRequests         429 the key is over its rate (retry_after_s)
    │   ├── InternalServerError     500 a bug in the controller
    │   └── ServiceUnavailable      503 NATS unreachable, storage full, draining: nothing ran
    ├── TransportError              no answer from the controller
    │   ├── ConnectionFailed        could not connect, or the connection broke
    │   └── TimedOut                no answer within the client's timeout
    └── InvalidResponse             an answer that is not what the API documents

Another status (405, 417...) raises :class:`APIError` itself. The statuses map to
classes in one place, :func:`api_error`.
"""

from __future__ import annotations

import msgspec

from schemas.api import ErrorBody


class NexecError(Exception):
    """Base class of every exception the nexec client raises."""


class APIError(NexecError):
    """The controller answered with an error status (``{"error", "details", "code"}``).

    Attributes:
        status: the HTTP status.
        error: the short message (``"not found"``).
        details: the precise reason (``"no registered agent matches target 'web9'"``).
        retry_after_s: the ``Retry-After`` header in seconds (429, some 503), else None.
    """

    status: int = 0

    def __init__(
        self, status: int, error: str, details: str, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{status} {error}: {details}")
        self.status = status
        self.error = error
        self.details = details
        self.retry_after_s = retry_after_s


class BadRequest(APIError):
    """400: an invalid body, target or query parameter; ``details`` names the field."""


class Unauthorized(APIError):
    """401: no key, or a key the controller does not know (revoked, expired)."""


class Forbidden(APIError):
    """403: the key lacks the permission, or may not reach the target."""


class NotFound(APIError):
    """404: no live agent matches the target, or no such job (or outside the key's scope)."""


class RequestTimeout(APIError):
    """408: the request body did not arrive within the controller's read timeout."""


class Conflict(APIError):
    """409: an Idempotency-Key reused for another request, or cancelling an ended job."""


class PayloadTooLarge(APIError):
    """413: the body is larger than the controller's ``max_body_bytes``."""


class UnsupportedMediaType(APIError):
    """415: a body not sent as ``application/json``."""


class TooManyRequests(APIError):
    """429: the key is over its request rate; ``retry_after_s`` says how long to wait."""


class InternalServerError(APIError):
    """500: an unexpected error in the controller (its log has the traceback)."""


class ServiceUnavailable(APIError):
    """503: NATS or JetStream unreachable, storage full, or the controller draining.
    By the API's contract nothing ran, was cancelled or deleted."""


class TransportError(NexecError):
    """No answer from the controller."""


class ConnectionFailed(TransportError):
    """The client could not connect to the controller, or the connection broke."""


class TimedOut(TransportError):
    """No answer within the client's timeout."""


class InvalidResponse(NexecError):
    """The controller's answer does not decode as the API documents it."""


ERROR_CLASSES: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: TooManyRequests,
    500: InternalServerError,
    503: ServiceUnavailable,
}
"""One class per documented error status (docs/api.md, "Errors")."""

for _status, _class in ERROR_CLASSES.items():
    _class.status = _status

_ERROR_BODY = msgspec.json.Decoder(ErrorBody)
_SHOWN_BODY_CHARS = 200


def api_error(
    status: int, body: bytes, reason: str, *, retry_after_s: float | None = None
) -> APIError:
    """The exception for an error answer: its class from the status, its fields from the
    ``{"error", "details", "code"}`` body (or, for a body that is not one, from the HTTP
    reason and the start of the body)."""
    try:
        decoded = _ERROR_BODY.decode(body)
        error, details = decoded.error, decoded.details
    except msgspec.DecodeError:
        error = reason or "HTTP error"
        details = body[:_SHOWN_BODY_CHARS].decode("utf-8", "replace")
    error_class = ERROR_CLASSES.get(status, APIError)
    return error_class(status, error, details, retry_after_s=retry_after_s)
