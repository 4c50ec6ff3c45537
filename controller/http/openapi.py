"""The OpenAPI document, generated from the route declarations (controller.http.operations)
and the msgspec models in ``schemas.api``.

Nothing here lists operations: each is declared once next to its handler, with its
parameters and statuses, and every body schema comes from the models, so the
document cannot drift from what the server routes, checks and decodes. The
parameters more than one route module takes live here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from controller.http.operations import Operation, parameter
from controller.http.validation import CURSOR_PATTERN
from schemas import __version__
from schemas.jsonschema import HTTP_TYPES
from schemas.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from schemas.targets import target_json_schema

REF = "#/components/schemas/{name}"

ERROR_TEXT = {
    400: "Invalid payload, target or query; details name the field and why.",
    401: "Missing or unknown API key.",
    403: "The key lacks the permission or may not reach the target.",
    404: "Nothing matches (agent, job or route), or it is outside the key's target patterns.",
    408: "The body did not arrive within http_read_timeout_s.",
    409: "Idempotency-Key reused for a different request, or the job has ended.",
    413: "Request body too large (the controller's max_body_bytes).",
    415: "The body is not sent as Content-Type: application/json.",
    429: "The key is over its request rate, or (exec and shell) its max_hosts slots are "
    "taken; retry after Retry-After seconds.",
    500: "Unexpected error (no stack trace is returned).",
    503: "NATS or JetStream unreachable, storage full, draining, too many connections, "
    "or (exec and shell) the fleet paused.",
}
RETRY_AFTER = {
    "description": "Whole seconds until the key may send again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}

# Each schema below states exactly what the server's parser accepts (see the module each
# constant comes from), except where noted: there the document is the stricter one, so
# that every request it allows is accepted. Whole numbers in the query and headers are
# JSON Schema integers; the server also takes leading zeros (``limit=007``).
TARGET = parameter(
    "path",
    "hostname",
    "An agent hostname, _any, _all, or labels key:value[,key:value] (each key once).",
    target_json_schema(),
)
LIMIT = parameter(
    "query",
    "limit",
    f"Page size, 1-{MAX_PAGE_SIZE}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
)
CURSOR = parameter(
    "query",
    "cursor",
    "next_cursor of the previous page.",
    {"type": "string", "pattern": CURSOR_PATTERN},
)


def content(model: type[msgspec.Struct]) -> dict[str, Any]:
    """A JSON body of ``model``, as a response's or request's ``content``."""
    return {"application/json": {"schema": {"$ref": REF.format(name=model.__name__)}}}


def _operation(operation: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": operation.summary}
    if operation.ok_body is not None:
        ok["content"] = content(operation.ok_body)
    elif operation.ok_content is not None:
        ok["content"] = operation.ok_content
    responses: dict[str, Any] = {str(operation.ok_status): ok}
    for status, body, description in operation.other_ok:
        responses[str(status)] = {"description": description, "content": content(body)}
    for code in operation.error_statuses:
        responses[str(code)] = {
            "description": ERROR_TEXT[code],
            "content": content(operation.error_body),
        }
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": RETRY_AFTER}
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "parameters": list(operation.parameters),
        "responses": responses,
    }
    if not operation.public:
        spec["security"] = [{"bearer": []}, {"apiKey": []}]
    if operation.request_body is not None:
        spec["requestBody"] = {"required": True, "content": content(operation.request_body)}
    return spec


def openapi_document(operations: Iterable[Operation]) -> bytes:
    """The encoded OpenAPI 3.1 document of ``operations``.

    Raises:
        KeyError: an operation declares a status :data:`ERROR_TEXT` does not describe.
    """
    _, components = msgspec.json.schema_components(HTTP_TYPES, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "nexec", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
    return msgspec.json.encode(document)
