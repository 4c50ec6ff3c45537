"""``GET /metrics``: the Prometheus exposition, on the controller's listener or on its
own (``metrics_listen``), and the middleware that counts every HTTP request.

Like ``/healthz`` it needs no key; it says nothing secret (no hostname, job id, key
or command is ever a label value). Keep it off a public interface with
``metrics_listen`` on a private address (docs/operations.md, "Monitoring").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from controller.appkeys import CONFIG, HTTP_METRICS, METRICS_EXPOSITION
from controller.config import split_host_port
from controller.errors import ClientDisconnected, NotFound
from controller.http.middleware import error_middleware
from controller.http.operations import Operations
from controller.metrics.exposition import Exposition
from controller.metrics.instruments import UNMATCHED_ROUTE

log = logging.getLogger("nexec.controller.http")

metrics_routes = Operations()

METRICS_CONTENT = {"text/plain": {"schema": {"type": "string"}}}


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request by method, route pattern and status, and time it (the first
    middleware: it sees the answer every other one gave). A request cancelled because
    its client left counts as ``499``, as the audit trail has it.

    Raises:
        whatever the handler raises (an ``HTTPException`` below 400, a cancel).
    """
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # a redirect: the error middleware answers the rest
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = ClientDisconnected.status
        raise
    finally:
        route = request.match_info.route.resource
        pattern = UNMATCHED_ROUTE if route is None else route.canonical
        request.app[HTTP_METRICS].observe(
            request.method, pattern, status, time.perf_counter() - started
        )


@metrics_routes.route(
    "GET", "/metrics", public=True, unlimited=True,
    summary="Prometheus metrics (404 when off, or served on metrics_listen instead)",
    ok_content=METRICS_CONTENT, errors=(404,),
)  # fmt: skip
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text exposition of this controller's metrics. No authentication.

    Raises:
        NotFound: metrics are off (``metrics_enabled``), or served on ``metrics_listen``.
    """
    config = request.app[CONFIG]
    if not config.metrics_enabled:
        raise NotFound("metrics are off on this controller (metrics_enabled)")
    if config.metrics_listen is not None:
        raise NotFound("metrics are served on their own listener (metrics_listen)")
    return exposition(request.app[METRICS_EXPOSITION])


def exposition(made: Exposition) -> web.Response:
    return web.Response(body=made.text(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def metrics_listener(app: web.Application) -> AsyncIterator[None]:
    """Serve ``GET /metrics`` alone on ``metrics_listen`` for the app's lifetime, when
    metrics are on and that is set.

    Raises:
        OSError: the address cannot be listened on.
    """
    config = app[CONFIG]
    if not config.metrics_enabled or config.metrics_listen is None:
        yield
        return
    made = app[METRICS_EXPOSITION]

    async def serve(request: web.Request) -> web.Response:
        return exposition(made)

    own = web.Application(middlewares=[error_middleware])
    own[CONFIG] = config
    own.router.add_get("/metrics", serve)
    runner = web.AppRunner(own, access_log=None)
    await runner.setup()
    try:
        host, port = split_host_port(config.metrics_listen)
        await web.TCPSite(runner, host, port).start()
        log.info("metrics on http://%s:%d/metrics", *runner.addresses[0][:2])
        yield
    finally:
        await runner.cleanup()
