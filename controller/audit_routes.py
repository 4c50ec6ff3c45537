"""``GET /audit``: the audit trail, newest first."""

from __future__ import annotations

from aiohttp import web

from controller.appkeys import API_KEY, AUDIT
from controller.errors import BadRequest
from controller.middleware import json_response
from controller.routes import require_nats, require_permission
from controller.validation import parse_page_size
from schemas.api import AuditList

audit_routes = web.RouteTableDef()


def _seconds(query: dict[str, str], name: str, default: float) -> float:
    """Raises: BadRequest when the value is not a Unix time in seconds."""
    text = query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise BadRequest(f"{name}: expected a Unix time in seconds")
    return value


@audit_routes.get("/audit")
async def list_audit(request: web.Request) -> web.Response:
    """Audit records newest first: ``?limit=`` (1-500), ``?cursor=``, ``?key=NAME``,
    ``?since=`` and ``?until=`` (Unix seconds). A key with target patterns sees only
    its own records. A page may be shorter than ``limit`` (see ``PAGE_READS_PER_ITEM``).

    Raises:
        Forbidden, BadRequest, NatsUnavailable (controller.errors).
    """
    api_key = request[API_KEY]
    require_permission(api_key, "audit:read")
    query = dict(request.query)
    limit = parse_page_size(query.get("limit"))
    since = _seconds(query, "since", 0.0)
    until = _seconds(query, "until", float("inf"))
    key_name = query.get("key")
    require_nats(request)
    if api_key.targets:
        if key_name not in (None, api_key.name):
            return json_response(AuditList(records=[], next_cursor=None))
        key_name = api_key.name
    try:
        page = await request.app[AUDIT].page(
            limit=limit,
            cursor=query.get("cursor"),
            key_name=key_name,
            since=since,
            until=until,
        )
    except ValueError as exc:
        raise BadRequest(f"cursor: {exc}") from exc
    return json_response(AuditList(records=page.records, next_cursor=page.next_cursor))
