"""Typed keys for what the application and each request carry."""

from __future__ import annotations

from aiohttp import web

from controller.agent_watch import AgentWatch
from controller.audit import AuditDetails, AuditLog
from controller.config import ControllerConfig
from controller.dispatch import Dispatcher
from controller.idempotency import IdempotencyKeys
from controller.keyreload import KeysReloader
from controller.keys import ApiKey, KeyStore
from controller.lifecycle import Lifecycle
from controller.natslink import NatsLink
from controller.operations import Operations
from controller.ratelimit import RateLimiter
from controller.records import JobStore
from controller.registry import Registry
from controller.registry_feed import RegistryFeed
from controller.statekeeper import StateKeeper
from controller.verdicts import VerdictRecorder
from schemas.streamwriter import StreamWriter

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
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
STREAM_WRITER = web.AppKey("stream_writer", StreamWriter)
OPERATIONS = web.AppKey("operations", Operations)
"""Every HTTP operation the app serves (controller.operations)."""
OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)

API_KEY = web.RequestKey("api_key", ApiKey)
AUDIT_DETAILS = web.RequestKey("audit_details", AuditDetails)
