"""The OpenAPI document, generated from the msgspec models in ``schemas.api``.

Only the list of operations below is written by hand; every body schema comes
from the models, so the document cannot drift from what the server decodes.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from schemas import ErrorBody, ExecRequest, ExecResponse, HealthResponse, __version__

REF = "#/components/schemas/{name}"

_ERRORS_BY_STATUS = {
    400: "Invalid payload or target syntax; details name the field and why.",
    401: "Missing or unknown API key.",
    403: "The key lacks the permission or may not reach the target.",
    404: "No registered agent matches the target.",
    413: "Request body too large.",
    500: "Unexpected error (no stack trace is returned).",
    503: "NATS unreachable.",
}


def _ref(model: type[msgspec.Struct]) -> dict[str, str]:
    return {"$ref": REF.format(name=model.__name__)}


def _json(model: type[msgspec.Struct], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _exec_operation() -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": _json(ExecResponse, "Every host's result, sorted by hostname.")
    }
    responses.update(
        {str(code): _json(ErrorBody, text) for code, text in _ERRORS_BY_STATUS.items()}
    )
    return {
        "summary": "Run an executable directly, without a shell",
        "operationId": "execCommand",
        "security": [{"bearer": []}, {"apiKey": []}],
        "parameters": [
            {
                "name": "hostname",
                "in": "path",
                "required": True,
                "description": "An agent hostname, _any, _all, or labels key:value[,key:value].",
                "schema": {"type": "string", "minLength": 1},
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref(ExecRequest)}},
        },
        "responses": responses,
    }


@functools.cache
def openapi_document() -> bytes:
    """The encoded OpenAPI 3.1 document (built once)."""
    _, components = msgspec.json.schema_components(
        [ExecRequest, ExecResponse, ErrorBody, HealthResponse], ref_template=REF
    )
    document = {
        "openapi": "3.1.0",
        "info": {"title": "nexec", "version": __version__},
        "paths": {
            "/node/{hostname}/command/exec": {"post": _exec_operation()},
            "/healthz": {
                "get": {
                    "summary": "Health: 200 once NATS is connected",
                    "operationId": "healthz",
                    "responses": {
                        "200": _json(HealthResponse, "Connected to NATS."),
                        "503": _json(HealthResponse, "Not connected to NATS."),
                    },
                }
            },
        },
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
    return msgspec.json.encode(document)
