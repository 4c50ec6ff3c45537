"""nexec's Python client: the HTTP API of a nexec controller, typed.

::

    async with nexec.Client("http://127.0.0.1:8080", api_key) as client:
        response = await client.exec("_all", "uptime")

``Client`` is async (aiohttp); ``SyncClient`` is its synchronous twin. Results are the
msgspec structs of ``schemas.api`` and ``schemas.messages``; errors are the classes of
``nexec.errors``, all under ``NexecError``. See docs/client.md. The ``nexec`` command
is :mod:`nexec.cli`, built on this client for its client commands.
"""

from nexec._client import DEFAULT_URL, Client
from nexec._events import EndEvent, Event, OutputEvent, ResultEvent
from nexec._options import CommandOptions
from nexec._retry import Retrying, RetryPolicy
from nexec._sync import SyncClient
from nexec.errors import (
    APIError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InternalServerError,
    InvalidResponse,
    NexecError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    TimedOut,
    TooManyRequests,
    TransportError,
    Unauthorized,
    UnsupportedMediaType,
)

__all__ = [
    "DEFAULT_URL",
    "APIError",
    "BadRequest",
    "Client",
    "CommandOptions",
    "Conflict",
    "ConnectionFailed",
    "EndEvent",
    "Event",
    "Forbidden",
    "InternalServerError",
    "InvalidResponse",
    "NexecError",
    "NotFound",
    "OutputEvent",
    "PayloadTooLarge",
    "RequestTimeout",
    "ResultEvent",
    "RetryPolicy",
    "Retrying",
    "ServiceUnavailable",
    "SyncClient",
    "TimedOut",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
]
