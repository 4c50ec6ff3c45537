"""The OpenAPI document, generated from the msgspec models in ``schemas.api``.

Only the table of operations below is written by hand; every body schema comes
from the models, so the document cannot drift from what the server decodes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import msgspec

from schemas import (
    ErrorBody,
    ExecRequest,
    ExecResponse,
    HealthResponse,
    ShellRequest,
    __version__,
)
from schemas.api import AuditList, JobList, JobView, NodeList
from schemas.jsonschema import HTTP_TYPES

REF = "#/components/schemas/{name}"

ERROR_TEXT = {
    400: "Invalid payload, target or query; details name the field and why.",
    401: "Missing or unknown API key.",
    403: "The key lacks the permission or may not reach the target.",
    404: "Nothing matches (agent, job or route), or it is outside the key's target patterns.",
    408: "The body did not arrive within http_read_timeout_s.",
    409: "Idempotency-Key reused for a different request.",
    413: "Request body too large.",
    415: "The body was not sent as Content-Type: application/json.",
    500: "Unexpected error (no stack trace is returned).",
    503: "NATS or JetStream unreachable, the controller draining, or too many connections.",
}
TARGET_PARAMETER = {
    "name": "hostname",
    "in": "path",
    "required": True,
    "description": "An agent hostname, _any, _all, or labels key:value[,key:value].",
    "schema": {"type": "string", "minLength": 1},
}


def _query(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string"}}  # fmt: skip


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok_status: int
    ok_body: type[msgspec.Struct] | None
    errors: tuple[int, ...]
    parameters: list[dict[str, Any]] = field(default_factory=list)
    request_body: type[msgspec.Struct] | None = None
    public: bool = False


OPERATIONS = (
    Operation("post", "/node/{hostname}/command/exec", "Run an executable, without a shell",
              202, ExecResponse, (400, 401, 403, 404, 408, 409, 413, 415, 500, 503),
              [TARGET_PARAMETER, _query("wait", "true (default), false, or seconds 0-300")],
              request_body=ExecRequest),
    Operation("post", "/node/{hostname}/command/shell", "Run one command line with /bin/sh -c",
              202, ExecResponse, (400, 401, 403, 404, 408, 409, 413, 415, 500, 503),
              [TARGET_PARAMETER, _query("wait", "true (default), false, or seconds 0-300")],
              request_body=ShellRequest),
    Operation("post", "/job/{job_id}/cancel", "Stop the job on every agent still running it",
              202, JobView, (401, 403, 404, 409, 500, 503), [_path("job_id")]),
    Operation("get", "/job/{job_id}/output",
              "Server-sent events (or NDJSON): output chunks, results, end", 200, None,
              (400, 401, 403, 404, 500, 503), [_path("job_id")]),
    Operation("get", "/job/{job_id}", "A job: request, state and every host's result",
              200, JobView, (401, 403, 404, 500, 503), [_path("job_id")]),
    Operation("get", "/job", "Recent jobs, newest first", 200, JobList,
              (400, 401, 403, 500, 503),
              [_query("limit", "1-500, default 50"), _query("cursor", "next_cursor of a page")]),
    Operation("delete", "/job/{job_id}", "Remove a job's record and results", 204, None,
              (401, 403, 404, 500, 503), [_path("job_id")]),
    Operation("get", "/node", "Every live agent", 200, NodeList, (401, 403, 500)),
    Operation("get", "/node/{hostname}", "The live agents a target addresses", 200, NodeList,
              (400, 401, 403, 404, 500), [TARGET_PARAMETER]),
    Operation("get", "/audit", "The audit trail, newest first", 200, AuditList,
              (400, 401, 403, 500, 503),
              [_query("limit", "1-500, default 50"), _query("cursor", "next_cursor of a page"),
               _query("key", "a key name"), _query("since", "Unix seconds"),
               _query("until", "Unix seconds")]),
    Operation("get", "/healthz", "200 once NATS is connected, else 503", 200, HealthResponse,
              (503,), public=True),
)  # fmt: skip


def _content(model: type[msgspec.Struct]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=model.__name__)}}}


def _operation(operation: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": operation.summary}
    if operation.ok_body is not None:
        ok["content"] = _content(operation.ok_body)
    responses: dict[str, Any] = {str(operation.ok_status): ok}
    for code in operation.errors:
        body = HealthResponse if operation.public else ErrorBody
        responses[str(code)] = {"description": ERROR_TEXT[code], "content": _content(body)}
    spec: dict[str, Any] = {
        "summary": operation.summary,
        "parameters": operation.parameters,
        "responses": responses,
    }
    if not operation.public:
        spec["security"] = [{"bearer": []}, {"apiKey": []}]
    if operation.request_body is not None:
        spec["requestBody"] = {"required": True, "content": _content(operation.request_body)}
    return spec


@functools.cache
def openapi_document() -> bytes:
    """The encoded OpenAPI 3.1 document (built once)."""
    _, components = msgspec.json.schema_components(HTTP_TYPES, ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
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
