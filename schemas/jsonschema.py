"""JSON Schema export of the wire types, for programs that publish on NATS directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from schemas.api import (
    AuditList,
    CancelAllResponse,
    DryRunResponse,
    ErrorBody,
    ExecRequest,
    ExecResponse,
    FleetStatus,
    HealthResponse,
    JobEnd,
    JobList,
    JobView,
    NodeList,
    ShellRequest,
    WhoAmI,
)
from schemas.messages import WIRE_TYPES, ExecResult, OutputChunk

HTTP_TYPES: tuple[type[msgspec.Struct], ...] = (
    ExecRequest,
    ShellRequest,
    ExecResponse,
    DryRunResponse,
    ErrorBody,
    HealthResponse,
    FleetStatus,
    CancelAllResponse,
    JobView,
    JobList,
    NodeList,
    AuditList,
    OutputChunk,
    ExecResult,
    JobEnd,
    WhoAmI,
)
"""Every body the HTTP API takes or gives, streamed events included."""


def message_schema(message_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The standalone JSON Schema (draft 2020-12) of one message type."""
    schema = msgspec.json.schema(message_type)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def write_schemas(out_dir: Path) -> list[Path]:
    """Write one ``<type tag>.json`` per NATS message and ``http-api.json``.

    Returns the paths written.

    Raises:
        OSError: the directory cannot be created or written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for message_type in WIRE_TYPES:
        tag = message_type.__struct_config__.tag
        path = out_dir / f"{tag}.json"
        path.write_bytes(msgspec.json.format(msgspec.json.encode(message_schema(message_type))))
        written.append(path)
    _, components = msgspec.json.schema_components(HTTP_TYPES)
    http_path = out_dir / "http-api.json"
    http_doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": components}
    http_path.write_bytes(msgspec.json.format(msgspec.json.encode(http_doc)))
    written.append(http_path)
    return written
