"""Bodies of the HTTP API, shared by the controller and its OpenAPI document."""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.messages import ExecResult

MIN_TIMEOUT_S = 1
MAX_TIMEOUT_S = 300
DEFAULT_TIMEOUT_S = 30


class ExecRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``POST /node/{hostname}/command/exec``: one executable, no shell."""

    command: Annotated[str, msgspec.Meta(min_length=1, description="The executable name or path.")]
    args: Annotated[list[str], msgspec.Meta(description="Command arguments.")] = []
    cwd: Annotated[str | None, msgspec.Meta(description="Working directory.")] = None
    timeout: Annotated[
        int,
        msgspec.Meta(
            ge=MIN_TIMEOUT_S,
            le=MAX_TIMEOUT_S,
            description="Seconds before the command is killed (default 30).",
        ),
    ] = DEFAULT_TIMEOUT_S


class ExecResponse(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an exec request: one result per host, sorted by hostname."""

    job_id: str
    results: list[ExecResult]


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """Every error response: a short message, the precise reason, the HTTP status."""

    error: str
    details: str
    code: int


class HealthResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /healthz``: 200 with ``status: ok`` once NATS is connected, else 503."""

    status: str
    nats: str
    agents: int
