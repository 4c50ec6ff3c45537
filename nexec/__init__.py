"""nexec's Python client: the HTTP API of a nexec controller, typed.

::

    async with nexec.Client("http://127.0.0.1:8080", api_key) as client:
        response = await client.exec("_all", "uptime")

``Client`` is async (aiohttp); ``SyncClient`` is its synchronous twin. Results are the
msgspec structs of ``schemas.api`` and ``schemas.messages``; errors are the classes of
``nexec.errors``, all under ``NexecError``. See docs/client.md. The ``nexec`` command
is :mod:`nexec.cli`, built on this client for its client commands.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from nexec._client import DEFAULT_URL, Client
    from nexec._events import EndEvent, Event, OutputEvent, ResultEvent
    from nexec._options import CommandOptions, Rollout
    from nexec._retry import Retrying, RetryPolicy
    from nexec._sync import SyncClient

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
    "Rollout",
    "ServiceUnavailable",
    "SyncClient",
    "TimedOut",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "UnsupportedMediaType",
]

_HOMES = {
    "DEFAULT_URL": "nexec._client",
    "Client": "nexec._client",
    "EndEvent": "nexec._events",
    "Event": "nexec._events",
    "OutputEvent": "nexec._events",
    "ResultEvent": "nexec._events",
    "CommandOptions": "nexec._options",
    "Rollout": "nexec._options",
    "Retrying": "nexec._retry",
    "RetryPolicy": "nexec._retry",
    "SyncClient": "nexec._sync",
}
"""Where each name that needs aiohttp lives: imported on first use, so that
``nexec.errors`` and the ``nexec`` command's admin subcommands load without it."""


def __getattr__(name: str) -> Any:
    """Raises: AttributeError: not a name of the package."""
    if name not in _HOMES:
        raise AttributeError(f"module 'nexec' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
