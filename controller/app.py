"""The aiohttp application and the lifecycle of its NATS side."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
from aiohttp import web
from nats.aio.client import Client
from nats.aio.msg import Msg

from controller.appkeys import CONFIG, DISPATCHER, KEYS, NATS_LINK, REGISTRY
from controller.config import ControllerConfig
from controller.dispatch import Dispatcher
from controller.keys import KeyStore
from controller.middleware import auth_middleware, error_middleware
from controller.natslink import NatsLink
from controller.registry import Registry
from controller.routes import routes
from schemas import Subjects, decode_heartbeat

log = logging.getLogger("nexec.controller")

NatsSetup = Callable[[Client], Awaitable[None]]


def create_app(config: ControllerConfig, keys: KeyStore) -> web.Application:
    """The controller's web application; NATS connects in the background when it starts."""
    app = web.Application(
        middlewares=[error_middleware, auth_middleware], client_max_size=config.max_body_bytes
    )
    registry = Registry()
    dispatcher = Dispatcher(config.subjects)
    app[CONFIG] = config
    app[KEYS] = keys
    app[REGISTRY] = registry
    app[DISPATCHER] = dispatcher
    app[NATS_LINK] = NatsLink(
        config.nats_url,
        name="nexec-controller",
        connect_timeout_s=config.connect_timeout_s,
        on_connected=_subscriber(config.subjects, registry, dispatcher),
    )
    app.add_routes(routes)
    app.cleanup_ctx.append(nats_context)
    return app


def _subscriber(subjects: Subjects, registry: Registry, dispatcher: Dispatcher) -> NatsSetup:
    async def on_heartbeat(msg: Msg) -> None:
        try:
            registry.observe(decode_heartbeat(msg.data))
        except msgspec.DecodeError as exc:
            log.warning("malformed heartbeat on %s ignored: %s", msg.subject, exc)

    async def on_connected(nc: Client) -> None:
        """Subscribe to heartbeats and replies, then ask every agent to announce itself."""
        await nc.subscribe(subjects.heartbeat_all(), cb=on_heartbeat)
        await dispatcher.attach(nc)
        await nc.publish(subjects.agent_ping(), b"")

    return on_connected


async def nats_context(app: web.Application) -> AsyncIterator[None]:
    """Connect to NATS in the background for the app's lifetime; drain on shutdown."""
    link = app[NATS_LINK]
    link.start()
    yield
    await link.close()
