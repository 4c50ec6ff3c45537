"""Request middleware: errors to JSON in one place, API-key authentication and each
operation's permission (from its declaration, controller.http.operations), and the audit."""

from __future__ import annotations

import asyncio
import logging

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from controller.appkeys import (
    API_KEY,
    AUDIT,
    AUDIT_DETAILS,
    CONFIG,
    KEYS,
    LIFECYCLE,
    NATS_LINK,
    OPERATIONS,
    RATE_LIMITER,
)
from controller.errors import (
    ApiError,
    ClientDisconnected,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    ShuttingDown,
    Unauthorized,
)
from controller.jobs.audit import AuditDetails, audit_record, request_record
from controller.keys.store import ApiKey, KeyExpired
from controller.natslink import LinkState
from schemas.api import ErrorBody

log = logging.getLogger("nexec.controller.http")

CLIENT_GONE_ERRORS = (ConnectionError, web.RequestPayloadError)
"""What reading a request or writing an answer raises once the client has closed
its connection (the request's transport is None then)."""


def json_response(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def error_response(status: int, error: str, details: str) -> web.Response:
    return json_response(ErrorBody(error=error, details=details, code=status), status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as ``{"error", "details", "code"}``; tracebacks go to the log only."""
    try:
        return await handler(request)
    except ApiError as exc:
        return api_error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        return api_error_response(PayloadTooLarge(f"the body is larger than {limit} bytes"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return http_error_response(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if request.transport is None and isinstance(exc, CLIENT_GONE_ERRORS):
            # A client error, not ours: no traceback, and a 499 for the audit trail.
            log.info("client %r disconnected during %s %r", request.remote, request.method,
                     request.path)  # fmt: skip
            return api_error_response(ClientDisconnected("the client closed the connection"))
        log.exception("unhandled error on %s %r", request.method, request.path)
        return error_response(500, "internal error", "unexpected error; see the controller log")


def api_error_response(exc: ApiError) -> web.Response:
    response = error_response(exc.status, exc.title, exc.details)
    response.headers.update(exc.headers)
    if exc.close:
        response.force_close()
    return response


def http_error_response(request: web.BaseRequest, exc: web.HTTPException) -> web.Response:
    """aiohttp's own error (404, 405, 417...) in the error shape; a 405 keeps ``Allow``."""
    details = f"{request.method} {request.path}: {exc.reason}"
    response = error_response(exc.status, exc.reason.lower(), details)
    if "Allow" in exc.headers:  # 405: the methods the path takes
        response.headers["Allow"] = exc.headers["Allow"]
    return response


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Append every request to an operation declared ``audited`` (exec, shell, cancel and
    job delete), and every 401 and 403, to the audit trail, with the status the caller got
    (errors are already responses here).

    A request recorded before it acted (:func:`audit_before_action`) is not appended
    again when it succeeded; when it failed, its failure is appended as a second record
    with the same job id."""
    response = await handler(request)
    details = request.get(AUDIT_DETAILS)
    if details is not None and details.recorded and response.status < 400:
        return response
    operation = request.app[OPERATIONS].of(request)
    audited = operation is not None and operation.audited
    if audited or response.status in (401, 403):
        api_key = request.get(API_KEY)
        record = audit_record(request, response, api_key.name if api_key else "", details)
        connected = request.app[NATS_LINK].state is LinkState.CONNECTED
        await request.app[AUDIT].append(record, connected=connected)
    return response


async def audit_before_action(
    request: web.Request, details: AuditDetails, *, status: int = 202
) -> None:
    """Store the request's audit record (outcome ``accepted``, ``status`` the answer if
    its action succeeds), acknowledged, before the request acts.

    Raises:
        NatsUnavailable: the record was not stored; the request must not act.
    """
    request[AUDIT_DETAILS] = details
    record = request_record(
        request, request[API_KEY].name, details, status=status, outcome="accepted"
    )
    await request.app[AUDIT].write(record)
    details.recorded = True


@web.middleware
async def lifecycle_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests in flight; while draining, answer 503 to new ones (but /healthz).

    Raises:
        ShuttingDown: the controller is draining.
    """
    lifecycle = request.app[LIFECYCLE]
    if lifecycle.draining and request.path not in request.app[OPERATIONS].unlimited_paths:
        lifecycle.refused_while_draining += 1
        raise ShuttingDown("the controller is shutting down; retry on another controller")
    lifecycle.request_started()
    try:
        return await handler(request)
    finally:
        lifecycle.request_ended()


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every request to an existing, non-public route before its body is
    read, then check the permission its declaration names (controller.http.operations).

    Raises:
        Unauthorized: no key, a key the controller does not know, or an expired key.
        RateLimited: the key is over its request rate, or the client's address over the
            same rate of requests without a valid key (each 401 is audited: a flood of
            them must not fill the audit trail).
        Forbidden: the key lacks the operation's permission.
    """
    operation = request.app[OPERATIONS].of(request)
    if operation is None or operation.public:
        return await handler(request)
    try:
        api_key = authenticate(request)
    except Unauthorized:
        retry_after_s = request.app[RATE_LIMITER].retry_after_s(f"\0from {request.remote}")
        if retry_after_s:
            raise RateLimited(
                f"too many requests without a valid key from {request.remote}; "
                f"retry after {retry_after_s}s",
                headers={"Retry-After": str(retry_after_s)},
            ) from None
        raise
    request[API_KEY] = api_key
    if not operation.unlimited:
        retry_after_s = request.app[RATE_LIMITER].retry_after_s(api_key.name)
        if retry_after_s:
            raise RateLimited(
                f"key {api_key.name!r} is over its request rate; retry after {retry_after_s}s",
                headers={"Retry-After": str(retry_after_s)},
            )
    if operation.permission is not None:
        require_permission(api_key, operation.permission)
    return await handler(request)


def require_permission(api_key: ApiKey, permission: str) -> None:
    """Raises: Forbidden when the key lacks ``permission``."""
    if not api_key.has_permission(permission):
        raise Forbidden(f"key {api_key.name!r} lacks the permission {permission!r}")


def authenticate(request: web.Request) -> ApiKey:
    """The key the request presents.

    Raises:
        Unauthorized: no key, a key the controller does not know, or an expired key.
    """
    presented = presented_key(request)
    if presented is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
    try:
        api_key = request.app[KEYS].authenticate(presented)
    except KeyExpired as exc:
        raise Unauthorized(str(exc)) from exc
    if api_key is None:
        raise Unauthorized("unknown API key")
    return api_key


def presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None
