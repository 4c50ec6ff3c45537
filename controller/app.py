"""The aiohttp application and the lifecycle of its NATS side."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from nats.aio.client import Client
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from controller.appkeys import (
    AGENT_WATCH,
    AUDIT,
    CONFIG,
    DISPATCHER,
    FLEET_PAUSE,
    HOST_SLOTS,
    HTTP_METRICS,
    IDEMPOTENCY,
    JOB_METRICS,
    JOB_STORE,
    KEYS,
    KEYS_RELOADER,
    LIFECYCLE,
    METRICS_EXPOSITION,
    NATS_LINK,
    OPENAPI_DOCUMENT,
    OPERATIONS,
    RATE_LIMITER,
    REGISTRY,
    REGISTRY_FEED,
    ROLLOUT_STORE,
    ROLLOUTS,
    STATE_KEEPER,
    STREAM_WRITER,
    VERDICTS,
)
from controller.config import ControllerConfig
from controller.fleet_pause import FleetPauseState
from controller.http.audit_routes import audit_routes
from controller.http.console_routes import console_headers, console_routes
from controller.http.fleet_routes import fleet_routes
from controller.http.job_routes import job_routes
from controller.http.key_routes import key_routes
from controller.http.metrics_routes import metrics_listener, metrics_middleware, metrics_routes
from controller.http.middleware import (
    audit_middleware,
    auth_middleware,
    error_middleware,
    lifecycle_middleware,
)
from controller.http.node_routes import node_routes
from controller.http.openapi import openapi_document
from controller.http.operations import Operations
from controller.http.routes import routes
from controller.http.server import connection_middleware
from controller.jobs.agent_watch import AgentWatch, ReportLimits
from controller.jobs.audit import AuditLog
from controller.jobs.dispatch import Dispatcher
from controller.jobs.host_slots import HostSlotsStore
from controller.jobs.idempotency import IdempotencyKeys
from controller.jobs.records import JobStore
from controller.jobs.rollout import RolloutDeps
from controller.jobs.rollout_store import RolloutStore
from controller.jobs.rollouts import Rollouts, new_driver_id
from controller.jobs.verdicts import VerdictRecorder
from controller.keys.reload import KeysReloader
from controller.keys.store import KeyStore
from controller.lifecycle import Lifecycle
from controller.metrics.exposition import Exposition
from controller.metrics.instruments import HttpMetrics, JobMetrics
from controller.metrics.state import StateCollector
from controller.natslink import LinkState, NatsLink
from controller.registry.feed import RegistryFeed
from controller.registry.view import Registry
from controller.service import controller_service
from controller.statekeeper import StateKeeper
from runtime.ratelimit import RateLimiter
from runtime.signing import JobSigner
from runtime.streamwriter import StreamWriter

log = logging.getLogger("nexec.controller")

API = Operations(
    routes,
    job_routes,
    node_routes,
    audit_routes,
    fleet_routes,
    key_routes,
    console_routes,
    metrics_routes,
)
"""Every HTTP operation the controller serves, each declared next to its handler."""

NatsSetup = Callable[[Client], Awaitable[None]]


def create_app(config: ControllerConfig, keys: KeyStore) -> web.Application:
    """The controller's web application; NATS connects in the background when it starts.
    ``keys`` stays its key store: reloads of ``config.keys_file`` replace its content.
    With ``job_signing_key_file`` set, every job it publishes is signed (runtime/signing.py).

    Raises:
        SigningKeyError: the signing key file cannot be read or holds no user seed.
    """
    signer = None
    if config.job_signing_key_file is not None:
        signer = JobSigner.from_file(config.job_signing_key_file)
        log.info("signing every job as %s", signer.public_key)
    counted: list[Middleware] = [metrics_middleware] if config.metrics_enabled else []
    app = web.Application(
        middlewares=[
            *counted,
            audit_middleware,
            error_middleware,
            connection_middleware,
            lifecycle_middleware,
            auth_middleware,
        ],
        client_max_size=config.max_body_bytes,
    )
    link = NatsLink(
        config.nats_url,
        name="nexec-controller",
        connect_timeout_s=config.connect_timeout_s,
        options=config.nats_connect_options(),
        probe_interval_s=config.health_probe_interval_s,
        probe_timeout_s=config.health_probe_timeout_s,
    )
    js = link.client.jetstream(timeout=config.jetstream_timeout_s)
    app[CONFIG] = config
    app[LIFECYCLE] = Lifecycle()
    app[KEYS] = keys
    app[KEYS_RELOADER] = KeysReloader(keys, config.keys_file, config.keys_reload_interval_s)
    app[REGISTRY] = Registry()
    app[REGISTRY_FEED] = RegistryFeed(
        app[REGISTRY],
        check_interval_s=config.registry_check_interval_s,
        check_timeout_s=config.health_probe_timeout_s,
    )
    app[NATS_LINK] = link
    app[RATE_LIMITER] = RateLimiter(config.rate_limit_per_s, config.rate_limit_burst)
    add_jobs(app, link, js, signer)
    add_metrics(app)
    app[OPERATIONS] = API
    app[OPENAPI_DOCUMENT] = openapi_document(API)
    API.add_to(app)
    app.on_response_prepare.append(console_headers)
    app.cleanup_ctx.append(keys_context)
    app[STATE_KEEPER] = keep_state(app, js)
    app.cleanup_ctx.append(nats_context)
    return app


def add_metrics(app: web.Application) -> None:
    """This controller's own metrics registry, what records into it and what it reads
    when scraped (the dispatcher's counters among it: call it after :func:`add_jobs`),
    and its own listener if ``metrics_listen`` is set; with metrics off, a
    :class:`JobMetrics` that records nothing."""
    if not app[CONFIG].metrics_enabled:
        app[JOB_METRICS] = JobMetrics(enabled=False)
        return
    registry = CollectorRegistry(auto_describe=False)
    app[METRICS_EXPOSITION] = Exposition(registry, cache_s=app[CONFIG].metrics_cache_s)
    app[HTTP_METRICS] = HttpMetrics()
    app[JOB_METRICS] = JobMetrics(app[DISPATCHER].counters)
    for collector in (app[HTTP_METRICS], app[JOB_METRICS], StateCollector(app)):
        registry.register(collector)
    app.cleanup_ctx.append(metrics_listener)


def add_jobs(
    app: web.Application, link: NatsLink, js: JetStreamContext, signer: JobSigner | None
) -> None:
    """The job domain's parts, wired to one another: records, verdicts, dispatch, the
    agent watch, idempotency, the audit trail, the fleet pause and rollouts."""
    config = app[CONFIG]
    subjects = config.subjects
    writer = StreamWriter(
        link.client, timeout_s=config.jetstream_timeout_s, stream_of=subjects.stream_of
    )
    app[STREAM_WRITER] = writer
    job_store = JobStore(js, writer, config.subjects)
    app[VERDICTS] = VerdictRecorder(job_store, retry_for_s=config.job_retention_s)
    app[DISPATCHER] = Dispatcher(subjects, record_no_replies=app[VERDICTS].record, signer=signer)
    app[AGENT_WATCH] = AgentWatch(
        config.subjects,
        app[DISPATCHER].collectors,
        app[REGISTRY],
        lost_after_s=config.agent_lost_after_s,
        connection_ok=lambda: link.state is LinkState.CONNECTED and link.probe_failure is None,
        recorded=job_store.host_result,
        reports_limits=ReportLimits(
            config.running_reports_pending_msgs,
            config.running_reports_pending_bytes,
            dropped=lambda: link.errors.drops[config.subjects.running_all()],
        ),
    )
    app[JOB_STORE] = job_store
    app[IDEMPOTENCY] = IdempotencyKeys(js, config.subjects)
    app[AUDIT] = AuditLog(js, writer, config.subjects)
    app[FLEET_PAUSE] = FleetPauseState(js, config.subjects)
    app[ROLLOUT_STORE] = RolloutStore(js, writer, config.subjects)
    app[HOST_SLOTS] = HostSlotsStore(js, config.subjects)
    app[ROLLOUTS] = Rollouts(
        RolloutDeps(
            dispatcher=app[DISPATCHER],
            store=app[ROLLOUT_STORE],
            job_store=job_store,
            verdicts=app[VERDICTS],
            fleet=app[FLEET_PAUSE],
            slots=app[HOST_SLOTS],
            slots_retry_s=config.host_slots_retry_s,
            delivery_margin_s=config.delivery_margin_s,
            driver=new_driver_id(),
            lease_s=config.rollout_lease_s,
            idempotency=app[IDEMPOTENCY],
        )
    )


async def keys_context(app: web.Application) -> AsyncIterator[None]:
    """Follow the keys file (reload on change or SIGHUP) for the app's lifetime."""
    reloader = app[KEYS_RELOADER]
    reloader.start()
    yield
    await reloader.stop()


async def nats_context(app: web.Application) -> AsyncIterator[None]:
    """Connect to NATS in the background for the app's lifetime; drain on shutdown.

    Once connected: the record streams and the idempotency bucket exist, the
    dispatcher listens for acks and results, and then the registry view follows the
    registry bucket (so an agent it lists can be sent jobs at once).
    """
    config = app[CONFIG]
    feed = app[REGISTRY_FEED]
    link = app[NATS_LINK]
    js = link.client.jetstream(timeout=config.jetstream_timeout_s)
    keeper = app[STATE_KEEPER]
    watch = app[AGENT_WATCH]
    service = controller_service(config, app[DISPATCHER], app[REGISTRY])

    async def on_connected(nc: Client) -> None:
        await app[STREAM_WRITER].open()
        await ensure_records(app)
        await ensure_idempotency(app)
        await ensure_audit(app)
        await ensure_fleet(app)  # before the first request: a paused fleet refuses it
        await ensure_rollouts(app)
        await ensure_host_slots(app)
        await app[DISPATCHER].attach(nc, js)
        await watch.attach(nc)
        await service.start(nc)  # ADR-32 discovery (runtime/service.py)
        app[ROLLOUTS].follow()  # take over rollouts whose driver is gone
        await feed.start(
            js,
            config.subjects,
            replicas=config.jetstream_replicas,
            max_bytes=config.registry_max_bytes,
        )
        keeper.start(js)

    link.on_connection_change(lost=feed.suspend, back=feed.watch_again)
    link.on_connection_change(lost=watch.restart_clocks, back=watch.connection_back)
    link.on_connection_change(lost=lambda: None, back=app[FLEET_PAUSE].watch_again)
    probe_js = link.client.jetstream(timeout=config.health_probe_timeout_s)
    jobs_stream = config.subjects.jobs_stream()
    link.start(on_connected, probe=lambda: probe_js.stream_info(jobs_stream))
    yield
    await service.stop()
    await keeper.stop()
    await app[FLEET_PAUSE].stop()
    await watch.close()
    await app[ROLLOUTS].close()
    await app[DISPATCHER].close()
    await app[VERDICTS].close()
    await feed.stop()
    await link.close()


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
