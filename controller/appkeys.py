"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from controller.config import ControllerConfig
from controller.fleet_pause import FleetPauseState
from controller.http.operations import Operations
from controller.jobs.agent_watch import AgentWatch
from controller.jobs.audit import AuditDetails, AuditLog
from controller.jobs.dispatch import Dispatcher
from controller.jobs.host_slots import HostSlotsStore
from controller.jobs.idempotency import IdempotencyKeys
from controller.jobs.records import JobStore
from controller.jobs.rollout_store import RolloutStore
from controller.jobs.rollouts import Rollouts
from controller.jobs.verdicts import VerdictRecorder
from controller.keys.reload import KeysReloader
from controller.keys.store import ApiKey, KeyStore
from controller.lifecycle import Lifecycle
from controller.metrics.exposition import Exposition
from controller.metrics.instruments import HttpMetrics, JobMetrics
from controller.natslink import NatsLink
from controller.registry.feed import RegistryFeed
from controller.registry.view import Registry
from controller.statekeeper import StateKeeper
from runtime.ratelimit import RateLimiter
from runtime.streamwriter import StreamWriter

CONFIG = web.AppKey("config", ControllerConfig)
KEYS = web.AppKey("keys", KeyStore)
KEYS_RELOADER = web.AppKey("keys_reloader", KeysReloader)
REGISTRY = web.AppKey("registry", Registry)
REGISTRY_FEED = web.AppKey("registry_feed", RegistryFeed)
STATE_KEEPER = web.AppKey("state_keeper", StateKeeper)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
AGENT_WATCH = web.AppKey("agent_watch", AgentWatch)
NATS_LINK = web.AppKey("nats_link", NatsLink)
JOB_STORE = web.AppKey("job_store", JobStore)
VERDICTS = web.AppKey("verdicts", VerdictRecorder)
IDEMPOTENCY = web.AppKey("idempotency", IdempotencyKeys)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
AUDIT = web.AppKey("audit", AuditLog)
FLEET_PAUSE = web.AppKey("fleet_pause", FleetPauseState)
ROLLOUT_STORE = web.AppKey("rollout_store", RolloutStore)
HOST_SLOTS = web.AppKey("host_slots", HostSlotsStore)
ROLLOUTS = web.AppKey("rollouts", Rollouts)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
STREAM_WRITER = web.AppKey("stream_writer", StreamWriter)
OPERATIONS = web.AppKey("operations", Operations)
"""Every HTTP operation the app serves (controller.http.operations)."""
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
METRICS_EXPOSITION = web.AppKey("metrics_exposition", Exposition)
"""This controller's own Prometheus registry (set only with metrics on)."""
HTTP_METRICS = web.AppKey("http_metrics", HttpMetrics)
JOB_METRICS = web.AppKey("job_metrics", JobMetrics)

API_KEY = web.RequestKey("api_key", ApiKey)
AUDIT_DETAILS = web.RequestKey("audit_details", AuditDetails)
