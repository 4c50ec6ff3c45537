"""The aiohttp application: its parts wired to one another and its HTTP side (the NATS
side, connected when it starts, is :mod:`controller.app_nats`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry

from controller.app_nats import keep_state, nats_context
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


def create_app(config: ControllerConfig, keys: KeyStore) -> web.Application:
    """The controller's web application; NATS connects in the background when it starts.
    ``keys`` stays its key store: reloads of ``config.keys_file`` replace its content.
    With ``job_signing_key_file`` set, every job it publishes is signed (runtime/signing.py).

    Raises:
        SigningKeyError: the signing key file cannot be read or holds no user seed.
    """
    signer = job_signer(config)
    app = web.Application(
        middlewares=http_middlewares(config), client_max_size=config.max_body_bytes
    )
    link = nats_link(config)
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
    add_api(app)
    app.cleanup_ctx.append(keys_context)
    app[STATE_KEEPER] = keep_state(app, js)
    app.cleanup_ctx.append(nats_context)
    return app


def job_signer(config: ControllerConfig) -> JobSigner | None:
    """The signer of every job published, with ``job_signing_key_file`` set; else None.

    Raises:
        SigningKeyError: the signing key file cannot be read or holds no user seed.
    """
    if config.job_signing_key_file is None:
        return None
    signer = JobSigner.from_file(config.job_signing_key_file)
    log.info("signing every job as %s", signer.public_key)
    return signer


def http_middlewares(config: ControllerConfig) -> list[Middleware]:
    """The middlewares every request passes, outermost first (the metrics' only when on)."""
    counted: list[Middleware] = [metrics_middleware] if config.metrics_enabled else []
    return [
        *counted,
        audit_middleware,
        error_middleware,
        connection_middleware,
        lifecycle_middleware,
        auth_middleware,
    ]


def nats_link(config: ControllerConfig) -> NatsLink:
    """The controller's one NATS connection, not yet started (see :mod:`controller.app_nats`)."""
    return NatsLink(
        config.nats_url,
        name="nexec-controller",
        connect_timeout_s=config.connect_timeout_s,
        options=config.nats_connect_options(),
        probe_interval_s=config.health_probe_interval_s,
        probe_timeout_s=config.health_probe_timeout_s,
    )


def add_api(app: web.Application) -> None:
    """The HTTP operations: their routes, the OpenAPI document, the console's headers."""
    app[OPERATIONS] = API
    app[OPENAPI_DOCUMENT] = openapi_document(API)
    API.add_to(app)
    app.on_response_prepare.append(console_headers)


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
    app[DISPATCHER] = Dispatcher(
        subjects,
        record_no_replies=app[VERDICTS].record,
        signer=signer,
        record_taker=job_store.record_taker,
        results_heartbeat_s=config.results_heartbeat_s,
    )
    app[AGENT_WATCH] = agent_watch(app, link, job_store)
    app[JOB_STORE] = job_store
    app[IDEMPOTENCY] = IdempotencyKeys(js, config.subjects)
    app[AUDIT] = AuditLog(js, writer, config.subjects)
    app[FLEET_PAUSE] = FleetPauseState(js, config.subjects)
    app[ROLLOUT_STORE] = RolloutStore(js, writer, config.subjects)
    app[HOST_SLOTS] = HostSlotsStore(js, config.subjects)
    app[ROLLOUTS] = rollouts(app, job_store)


def agent_watch(app: web.Application, link: NatsLink, job_store: JobStore) -> AgentWatch:
    """The watch over the agents running this controller's jobs (call it once the
    dispatcher and the registry are in ``app``)."""
    config = app[CONFIG]
    return AgentWatch(
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


def rollouts(app: web.Application, job_store: JobStore) -> Rollouts:
    """The rollouts this controller drives or takes over (call it once every other
    part of the job domain is in ``app``)."""
    config = app[CONFIG]
    return Rollouts(
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
