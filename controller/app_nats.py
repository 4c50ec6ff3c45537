"""The NATS side of the controller's application: connecting in the background, what
is made and started once connected, what is kept in place, and the drain on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from nats.aio.client import Client
from nats.js import JetStreamContext

from controller.appkeys import (
    AGENT_WATCH,
    AUDIT,
    CONFIG,
    DISPATCHER,
    FLEET_PAUSE,
    HOST_SLOTS,
    IDEMPOTENCY,
    JOB_STORE,
    NATS_LINK,
    REGISTRY,
    REGISTRY_FEED,
    ROLLOUT_STORE,
    ROLLOUTS,
    STATE_KEEPER,
    STREAM_WRITER,
    VERDICTS,
)
from controller.service import controller_service
from controller.statekeeper import StateKeeper
from runtime.service import ServiceResponder

NatsSetup = Callable[[Client], Awaitable[None]]


async def nats_context(app: web.Application) -> AsyncIterator[None]:
    """Connect to NATS in the background for the app's lifetime; drain on shutdown.

    Once connected: the record streams and the idempotency bucket exist, the
    dispatcher listens for acks and results, and then the registry view follows the
    registry bucket (so an agent it lists can be sent jobs at once).
    """
    config = app[CONFIG]
    link = app[NATS_LINK]
    service = controller_service(config, app[DISPATCHER], app[REGISTRY])
    on_connected = when_connected(app, service)
    follow_connection(app)
    probe_js = link.client.jetstream(timeout=config.health_probe_timeout_s)
    jobs_stream = config.subjects.jobs_stream()
    link.start(on_connected, probe=lambda: probe_js.stream_info(jobs_stream))
    yield
    await close_nats_side(app, service)


def when_connected(app: web.Application, service: ServiceResponder) -> NatsSetup:
    """What runs each time the connection is made: the streams and buckets made or
    brought to the settings, then the subscriptions, the discovery service, the rollout
    takeover, the registry feed and the state keeper, in that order."""
    config = app[CONFIG]
    js = app[NATS_LINK].client.jetstream(timeout=config.jetstream_timeout_s)

    async def on_connected(nc: Client) -> None:
        await app[STREAM_WRITER].open()
        await ensure_records(app)
        await ensure_idempotency(app)
        await ensure_audit(app)
        await ensure_fleet(app)  # before the first request: a paused fleet refuses it
        await ensure_rollouts(app)
        await ensure_host_slots(app)
        await app[DISPATCHER].attach(nc, js)
        await app[AGENT_WATCH].attach(nc)
        await service.start(nc)  # ADR-32 discovery (runtime/service.py)
        app[ROLLOUTS].follow()  # take over rollouts whose driver is gone
        await app[REGISTRY_FEED].start(
            js,
            config.subjects,
            replicas=config.jetstream_replicas,
            max_bytes=config.registry_max_bytes,
        )
        app[STATE_KEEPER].start(js)

    return on_connected


def follow_connection(app: web.Application) -> None:
    """What the registry feed, the agent watch and the fleet pause do when the
    connection is lost and when it is back."""
    link = app[NATS_LINK]
    feed = app[REGISTRY_FEED]
    watch = app[AGENT_WATCH]
    link.on_connection_change(lost=feed.suspend, back=feed.watch_again)
    link.on_connection_change(lost=watch.restart_clocks, back=watch.connection_back)
    link.on_connection_change(lost=lambda: None, back=app[FLEET_PAUSE].watch_again)


async def close_nats_side(app: web.Application, service: ServiceResponder) -> None:
    """Stop what runs on NATS, in order, and close the connection last."""
    await service.stop()
    await app[STATE_KEEPER].stop()
    await app[FLEET_PAUSE].stop()
    await app[AGENT_WATCH].close()
    await app[ROLLOUTS].close()
    await app[DISPATCHER].close()
    await app[VERDICTS].close()
    await app[REGISTRY_FEED].stop()
    await app[NATS_LINK].close()


async def ensure_records(app: web.Application) -> None:
    """The job and results streams, as configured (made, or brought to the settings).

    Raises:
        NatsUnavailable: JetStream is unavailable or refused the configuration.
    """
    config = app[CONFIG]
    await app[JOB_STORE].ensure_streams(
        retention_s=config.job_retention_s,
        replicas=config.jetstream_replicas,
        jobs_max_bytes=config.jobs_max_bytes,
        results_max_bytes=config.results_max_bytes,
    )


async def ensure_idempotency(app: web.Application) -> None:
    """The idempotency bucket, as configured. Raises: NatsUnavailable."""
    config = app[CONFIG]
    await app[IDEMPOTENCY].open(
        retention_s=config.job_retention_s,
        replicas=config.jetstream_replicas,
        max_bytes=config.idempotency_max_bytes,
    )


async def ensure_audit(app: web.Application) -> None:
    """The audit stream, as configured. Raises: NatsUnavailable."""
    config = app[CONFIG]
    await app[AUDIT].ensure_stream(
        retention_s=config.audit_retention_s,
        replicas=config.jetstream_replicas,
        max_bytes=config.audit_max_bytes,
    )


async def ensure_fleet(app: web.Application) -> None:
    """The fleet bucket, as configured, and the pause it holds. Raises: NatsUnavailable."""
    config = app[CONFIG]
    await app[FLEET_PAUSE].open(
        replicas=config.jetstream_replicas, max_bytes=config.fleet_max_bytes
    )


async def ensure_rollouts(app: web.Application) -> None:
    """The rollouts bucket, as configured. Raises: NatsUnavailable."""
    config = app[CONFIG]
    await app[ROLLOUT_STORE].open(
        retention_s=config.job_retention_s,
        replicas=config.jetstream_replicas,
        max_bytes=config.rollouts_max_bytes,
    )


async def ensure_host_slots(app: web.Application) -> None:
    """The host-slots bucket, as configured. Raises: NatsUnavailable."""
    config = app[CONFIG]
    await app[HOST_SLOTS].open(
        retention_s=config.job_retention_s,
        replicas=config.jetstream_replicas,
        max_bytes=config.host_slots_max_bytes,
    )


def keep_state(app: web.Application, js: JetStreamContext) -> StateKeeper:
    """What the controller keeps in place, and how each is made again (see
    :mod:`controller.statekeeper`)."""
    subjects = app[CONFIG].subjects
    keeper = StateKeeper(app[CONFIG].state_check_interval_s)

    async def remake_results() -> None:
        await ensure_records(app)
        await app[DISPATCHER].read_results_again(js)

    keeper.keep(subjects.jobs_stream(), lambda: ensure_records(app))
    keeper.keep(subjects.results_stream(), remake_results)
    keeper.keep(f"KV_{subjects.idempotency_bucket()}", lambda: ensure_idempotency(app))
    keeper.keep(subjects.audit_stream(), lambda: ensure_audit(app))
    keeper.keep(f"KV_{subjects.fleet_bucket()}", app[FLEET_PAUSE].remake)
    keeper.keep(f"KV_{subjects.rollouts_bucket()}", lambda: ensure_rollouts(app))
    keeper.keep(f"KV_{subjects.host_slots_bucket()}", lambda: ensure_host_slots(app))
    keeper.keep(f"KV_{subjects.registry_bucket()}", app[REGISTRY_FEED].watch_again)
    return keeper
