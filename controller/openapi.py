"""The OpenAPI document, generated from the msgspec models in ``schemas.api``.

Only the table of operations below is written by hand; every body schema comes
from the models, so the document cannot drift from what the server decodes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import msgspec

from controller.validation import CURSOR_PATTERN, DEFAULT_PAGE_SIZE, MAX_EVENT_ID, MAX_PAGE_SIZE
from schemas import (
    ErrorBody,
    ExecRequest,
    ExecResponse,
    HealthResponse,
    ShellRequest,
    __version__,
)
from schemas.api import MAX_TIMEOUT_S, AuditList, JobEnd, JobList, JobView, NodeList
from schemas.jsonschema import HTTP_TYPES
from schemas.messages import MAX_JOB_ID_LENGTH, ExecResult, OutputChunk
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
    429: "The key is over its request rate; retry after Retry-After seconds.",
    500: "Unexpected error (no stack trace is returned).",
    503: "NATS or JetStream unreachable, storage full, draining, or too many connections.",
}
LIVE_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "alive"}},
        }
    }
}
"""``GET /livez``'s body: ``{"status": "alive"}``."""
AUTHENTICATED_ERRORS = (401, 403, 429, 500, 503)
"""What every operation behind an API key can answer: the middleware's statuses."""
RETRY_AFTER = {
    "description": "Whole seconds until the key may send again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def _parameter(where: str, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema}  # fmt: skip


# Each schema below states exactly what the server's parser accepts (see the module each
# constant comes from), except where noted: there the document is the stricter one, so
# that every request it allows is accepted. Whole numbers in the query and headers are
# JSON Schema integers; the server also takes leading zeros (``limit=007``).
TARGET = _parameter(
    "path",
    "hostname",
    "An agent hostname, _any, _all, or labels key:value[,key:value] (each key once).",
    target_json_schema(),
)
# The server looks up any job id (404 if unknown); the document allows the ids a job
# may have on the wire (schemas.messages.ExecJob).
JOB_ID = _parameter(
    "path",
    "job_id",
    "A job id (the server mints UUIDs).",
    {"type": "string", "minLength": 1, "maxLength": MAX_JOB_ID_LENGTH},
)
WAIT = _parameter(
    "query",
    "wait",
    f"true (default: until every host answered), false, or whole seconds 0-{MAX_TIMEOUT_S}.",
    {
        "anyOf": [
            {"type": "string", "enum": ["true", "false"]},
            {"type": "integer", "minimum": 0, "maximum": MAX_TIMEOUT_S},
        ]
    },
)
IDEMPOTENCY_KEY = _parameter(
    "header",
    "Idempotency-Key",
    "Repeat a request without running it twice: the same key and request return the first job.",
    {"type": "string"},
)
LIMIT = _parameter(
    "query",
    "limit",
    f"Page size, 1-{MAX_PAGE_SIZE}.",
    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
)
CURSOR = _parameter(
    "query",
    "cursor",
    "next_cursor of the previous page.",
    {"type": "string", "pattern": CURSOR_PATTERN},
)
# The server reads since/until with float(): it also takes "inf" and "1_0"; the document
# allows plain numbers only.
SINCE = _parameter(
    "query", "since", "Unix seconds: records at or after.", {"type": "number", "minimum": 0}
)
UNTIL = _parameter(
    "query", "until", "Unix seconds: records at or before.", {"type": "number", "minimum": 0}
)
KEY_NAME = _parameter("query", "key", "Only the records of this key name.", {"type": "string"})
LAST_EVENT_ID = _parameter(
    "header",
    "Last-Event-ID",
    "Resume after this event id.",
    {"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID},
)
EVENTS = (("output", OutputChunk), ("result", ExecResult), ("end", JobEnd))
"""The events of a job's output stream and the body each carries."""


def _event_streams() -> dict[str, Any]:
    """``GET /job/{id}/output``: as OpenAPI 3.1 reads a stream's ``schema``, each one
    describes one event (an SSE event; an NDJSON line)."""
    event_id = {"type": "string", "pattern": "^[0-9]+$"}
    sse = [
        {"properties": {"event": {"const": kind}, "data": {
            "type": "string", "contentMediaType": "application/json",
            "contentSchema": {"$ref": REF.format(name=model.__name__)}}}}
        for kind, model in EVENTS
    ]  # fmt: skip
    ndjson = [
        {"properties": {"event": {"const": kind},
                        "data": {"$ref": REF.format(name=model.__name__)}}}
        for kind, model in EVENTS
    ]  # fmt: skip
    return {
        "text/event-stream": {"schema": {
            "type": "object", "required": ["event", "data"],
            "properties": {"id": event_id}, "oneOf": sse}},
        "application/x-ndjson": {"schema": {
            "type": "object", "required": ["event", "id", "data"],
            "properties": {"id": {"type": ["integer", "null"]}}, "oneOf": ndjson}},
    }  # fmt: skip


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok_status: int
    ok_body: type[msgspec.Struct] | None
    errors: tuple[int, ...]
    """The operation's own statuses; AUTHENTICATED_ERRORS come with every non-public one."""
    parameters: list[dict[str, Any]] = field(default_factory=list)
    request_body: type[msgspec.Struct] | None = None
    public: bool = False
    ok_content: dict[str, Any] | None = None
    """The 200's media types when the body is not one JSON model."""


OPERATIONS = (
    Operation("post", "/node/{hostname}/command/exec", "Run an executable, without a shell",
              202, ExecResponse, (400, 404, 408, 409, 413, 415), [TARGET, WAIT, IDEMPOTENCY_KEY],
              request_body=ExecRequest),
    Operation("post", "/node/{hostname}/command/shell", "Run one command line with /bin/sh -c",
              202, ExecResponse, (400, 404, 408, 409, 413, 415), [TARGET, WAIT, IDEMPOTENCY_KEY],
              request_body=ShellRequest),
    Operation("post", "/job/{job_id}/cancel", "Stop the job on every agent still running it",
              202, JobView, (404, 409), [JOB_ID]),
    Operation("get", "/job/{job_id}/output",
              "Server-sent events (or NDJSON): output chunks, results, end", 200, None,
              (400, 404), [JOB_ID, LAST_EVENT_ID], ok_content=_event_streams()),
    Operation("get", "/job/{job_id}", "A job: request, state and every host's result",
              200, JobView, (404,), [JOB_ID]),
    Operation("get", "/job", "Recent jobs, newest first", 200, JobList, (400,), [LIMIT, CURSOR]),
    Operation("delete", "/job/{job_id}", "Remove a job's record and results", 204, None,
              (404,), [JOB_ID]),
    Operation("get", "/node", "Every live agent", 200, NodeList, ()),
    Operation("get", "/node/{hostname}", "The live agents a target addresses", 200, NodeList,
              (400, 404), [TARGET]),
    Operation("get", "/audit", "The audit trail, newest first", 200, AuditList, (400,),
              [LIMIT, CURSOR, KEY_NAME, SINCE, UNTIL]),
    Operation("get", "/healthz", "Readiness: 200 while requests can succeed, else 503 with reasons",
              200, HealthResponse, (503,), public=True),
    Operation("get", "/livez", "Liveness: 200 while the process runs", 200, None, (),
              public=True, ok_content=LIVE_CONTENT),
)  # fmt: skip


def _content(model: type[msgspec.Struct]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(name=model.__name__)}}}


def _operation(operation: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": operation.summary}
    if operation.ok_body is not None:
        ok["content"] = _content(operation.ok_body)
    elif operation.ok_content is not None:
        ok["content"] = operation.ok_content
    responses: dict[str, Any] = {str(operation.ok_status): ok}
    errors = operation.errors if operation.public else (*operation.errors, *AUTHENTICATED_ERRORS)
    for code in sorted(errors):
        body = HealthResponse if operation.public else ErrorBody
        responses[str(code)] = {"description": ERROR_TEXT[code], "content": _content(body)}
    if "429" in responses:
        responses["429"]["headers"] = {"Retry-After": RETRY_AFTER}
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
