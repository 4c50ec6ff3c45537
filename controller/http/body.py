"""Reading a request's JSON body: its media type and its read timeout.

A client that closes its connection mid-body makes the read raise
``ConnectionResetError``; :func:`controller.http.middleware.error_middleware` turns that
(and any other sign of a client gone) into ``499 client disconnected``.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import hdrs, web

from controller.appkeys import CONFIG
from controller.errors import BadRequest, RequestTimeout, UnsupportedMediaType

log = logging.getLogger("nexec.controller.http")

JSON_MEDIA_TYPE = "application/json"


def require_json(request: web.Request) -> None:
    """Raises: UnsupportedMediaType unless ``Content-Type`` is ``application/json``
    (parameters such as ``charset`` allowed)."""
    if hdrs.CONTENT_TYPE not in request.headers:
        raise UnsupportedMediaType(
            f"Content-Type: the body must be sent as {JSON_MEDIA_TYPE}; the request has none"
        )
    if request.content_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type: the body must be sent as {JSON_MEDIA_TYPE}, "
            f"not {request.content_type!r}"
        )


async def read_json_body(request: web.Request) -> bytes:
    """The whole body of a request that must carry JSON, read within ``http_read_timeout_s``.

    Raises:
        UnsupportedMediaType: see :func:`require_json`.
        RequestTimeout: the body did not arrive in time (the connection is closed after).
        ConnectionResetError, web.RequestPayloadError: the client closed the connection
            before the body's end.
        BadRequest: the body's framing is broken (bad chunked encoding).
        web.HTTPRequestEntityTooLarge: larger than ``max_body_bytes``.
    """
    require_json(request)
    timeout_s = request.app[CONFIG].http_read_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError as exc:
        log.info("body of %s %r from %r not read within %gs", request.method, request.path,
                 request.remote, timeout_s)  # fmt: skip
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g}s", close=True) from exc
    except web.RequestPayloadError as exc:
        if request.transport is None:
            raise  # the client left: controller.http.middleware answers that
        raise BadRequest(f"body: {exc}", close=True) from exc
