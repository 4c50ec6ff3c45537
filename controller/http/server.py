"""The HTTP server under the application: connections, their limits, and the answers
aiohttp gives before any middleware runs.

aiohttp parses each connection's requests in a ``RequestHandler`` and answers a
malformed one itself, in plain text (``handle_error``); no option changes that. So
the controller's runner builds a ``Server`` that makes :class:`ControllerRequestHandler`
instead, which answers in the error shape. The same server admits at most
``http_max_connections`` connections: a request on a connection opened beyond that
gets ``503 too many connections`` and the connection is closed
(:func:`connection_middleware`), except on the operations declared ``unlimited``
(controller.http.operations).

Read timeouts: aiohttp's keep-alive timer starts when a connection opens and again
after every answer, and closes the connection if no whole request head has arrived
by then. With ``keepalive_timeout = http_read_timeout_s`` that timer is the header
read timeout (and the idle timeout). The body's timeout is in :mod:`controller.http.body`.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion10
from aiohttp.typedefs import Handler
from aiohttp.web_log import AccessLogger

from controller.appkeys import CONFIG, OPERATIONS
from controller.errors import BadRequest, TooManyConnections
from controller.http.middleware import error_response, http_error_response

log = logging.getLogger("nexec.controller.http")


class ControllerRequestHandler(web.RequestHandler):
    """aiohttp's per-connection handler, answering its own errors in the error shape."""

    __slots__ = ("admitted",)

    def __init__(self, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.admitted = False

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request aiohttp could not parse (400), or to an error that
        escaped every middleware (500). The connection is closed after it.

        Raises:
            ConnectionError: part of another answer was already sent (as aiohttp does).
        """
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already started; cannot send an error")
        if status >= 500:
            log.error("unhandled error from %r", request.remote, exc_info=exc)
            title = "internal error" if status == 500 else HTTPStatus(status).phrase.lower()
            response = error_response(status, title, "unexpected error; see the controller log")
        else:
            reason = (message or str(exc or "") or "unparseable").strip().splitlines()[0]
            reason = reason.rstrip(":")
            log.info("malformed HTTP request from %r: %r", request.remote, reason)
            response = error_response(status, BadRequest.title, f"malformed HTTP: {reason}")
        response.force_close()
        return response

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """Send the answer; an aiohttp error raised before the middlewares ran (``417``
        for an unknown ``Expect``) leaves in the error shape too."""
        if isinstance(resp, web.HTTPException) and resp.status >= 400:
            resp = http_error_response(request, resp)
        return await super().finish_response(request, resp, start_time)


class ControllerServer(web.Server):
    """aiohttp's ``Server`` (the protocol factory), making :class:`ControllerRequestHandler`s
    and admitting at most ``max_connections`` of them."""

    def __init__(self, base: web.Server, *, max_connections: int, **handler_args: Any) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            loop=asyncio.get_running_loop(),
            **handler_args,
        )
        self._handler_args = handler_args
        self.max_connections = max_connections
        self.admitted = 0

    def __call__(self) -> web.RequestHandler:
        return ControllerRequestHandler(self, loop=self._loop, **self._handler_args)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if isinstance(handler, ControllerRequestHandler) and self.admitted < self.max_connections:
            handler.admitted = True
            self.admitted += 1

    def connection_lost(
        self, handler: web.RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        if isinstance(handler, ControllerRequestHandler) and handler.admitted:
            handler.admitted = False
            self.admitted -= 1


class ControllerRunner(web.AppRunner):
    """An ``AppRunner`` whose server is a :class:`ControllerServer`."""

    def __init__(self, app: web.Application, *, max_connections: int, **handler_args: Any) -> None:
        super().__init__(app, **handler_args)
        self._max_connections = max_connections
        self._handler_args = {"access_log_class": AccessLogger, **handler_args}

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()  # starts the application up
        return ControllerServer(base, max_connections=self._max_connections, **self._handler_args)


def make_runner(app: web.Application, *, access_log: logging.Logger | None) -> web.AppRunner:
    """The runner that serves the controller's application, with its HTTP settings."""
    config = app[CONFIG]
    return ControllerRunner(
        app,
        max_connections=config.http_max_connections,
        access_log=access_log,
        keepalive_timeout=config.http_read_timeout_s,
    )


@web.middleware
async def connection_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse HTTP/0.9 requests, and requests on a connection over the cap (but on
    the paths of operations declared ``unlimited``); both answers close the connection.

    Raises:
        BadRequest: an HTTP/0.9 request line (no version).
        TooManyConnections: the connection was opened beyond ``http_max_connections``.
    """
    if request.version < HttpVersion10:
        raise BadRequest("malformed HTTP: the request line has no HTTP version", close=True)
    protocol = request.protocol
    admitted = not isinstance(protocol, ControllerRequestHandler) or protocol.admitted
    if not admitted and request.path not in request.app[OPERATIONS].unlimited_paths:
        limit = request.app[CONFIG].http_max_connections
        raise TooManyConnections(
            f"the controller serves at most {limit} connections at once; retry later",
            headers={"Retry-After": "1"},
            close=True,
        )
    return await handler(request)
