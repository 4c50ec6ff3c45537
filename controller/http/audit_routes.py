"""``GET /audit``: the audit trail, newest first."""

from __future__ import annotations

from aiohttp import web

from controller.appkeys import API_KEY, AUDIT
from controller.errors import BadRequest
from controller.http.middleware import json_response
from controller.http.openapi import CURSOR, LIMIT
from controller.http.operations import Operations, parameter
from controller.http.routes import require_nats
from controller.http.validation import parse_page_size
from schemas.api import AuditList

audit_routes = Operations()

# The server reads since/until with float(): it also takes "inf" and "1_0"; the document
# allows plain numbers only.
SINCE = parameter(
    "query", "since", "Unix seconds: records at or after.", {"type": "number", "minimum": 0}
)
UNTIL = parameter(
    "query", "until", "Unix seconds: records at or before.", {"type": "number", "minimum": 0}
)
KEY_NAME = parameter("query", "key", "Only the records of this key name.", {"type": "string"})


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


@audit_routes.route(
    "GET", "/audit", permission="audit:read", summary="The audit trail, newest first",
    ok_body=AuditList, errors=(400,), parameters=(LIMIT, CURSOR, KEY_NAME, SINCE, UNTIL),
)  # fmt: skip
async def list_audit(request: web.Request) -> web.Response:
    """Audit records newest first: ``?limit=`` (1-500), ``?cursor=``, ``?key=NAME``,
    ``?since=`` and ``?until=`` (Unix seconds). A key with target patterns sees only
    its own records. A page may be shorter than ``limit`` (see ``PAGE_READS_PER_ITEM``).

    Raises:
        Forbidden, BadRequest, NatsUnavailable (controller.errors).
    """
    api_key = request[API_KEY]
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
