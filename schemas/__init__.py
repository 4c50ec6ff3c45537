"""Wire types, HTTP bodies, target syntax and subject names shared by nexec's processes.

This is the only package that both ``controller`` and ``agentd`` import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from schemas.api import ErrorBody, ExecRequest, ExecResponse, HealthResponse, ShellRequest
    from schemas.decoding import (
        WireError,
        decode_ack,
        decode_ack_from,
        decode_audit,
        decode_cancel,
        decode_chunk,
        decode_chunk_from,
        decode_heartbeat,
        decode_idempotency_claim,
        decode_job,
        decode_job_record,
        decode_reply,
        decode_result,
        decode_result_from,
        decode_running_report,
        decode_running_report_from,
    )
    from schemas.messages import (
        AuditRecord,
        CancelRequest,
        ExecAck,
        ExecJob,
        ExecResult,
        Heartbeat,
        IdempotencyClaim,
        JobRecord,
        OutputChunk,
        Reply,
        ReplyRoute,
        ResultStatus,
        RunningReport,
        encode,
    )
    from schemas.subjects import ANY_QUEUE_GROUP, DEFAULT_PREFIX, Subjects, encode_token
    from schemas.targets import Target, TargetKind, TargetSyntaxError, parse_label, parse_target

__version__ = "0.1.0"

__all__ = [
    "ANY_QUEUE_GROUP",
    "DEFAULT_PREFIX",
    "AuditRecord",
    "CancelRequest",
    "ErrorBody",
    "ExecAck",
    "ExecJob",
    "ExecRequest",
    "ExecResponse",
    "ExecResult",
    "HealthResponse",
    "Heartbeat",
    "IdempotencyClaim",
    "JobRecord",
    "OutputChunk",
    "Reply",
    "ReplyRoute",
    "ResultStatus",
    "RunningReport",
    "ShellRequest",
    "Subjects",
    "Target",
    "TargetKind",
    "TargetSyntaxError",
    "WireError",
    "__version__",
    "decode_ack",
    "decode_ack_from",
    "decode_audit",
    "decode_cancel",
    "decode_chunk",
    "decode_chunk_from",
    "decode_heartbeat",
    "decode_idempotency_claim",
    "decode_job",
    "decode_job_record",
    "decode_reply",
    "decode_result",
    "decode_result_from",
    "decode_running_report",
    "decode_running_report_from",
    "encode",
    "encode_token",
    "parse_label",
    "parse_target",
]

_HOMES = {
    "ErrorBody": "schemas.api",
    "ExecRequest": "schemas.api",
    "ExecResponse": "schemas.api",
    "HealthResponse": "schemas.api",
    "ShellRequest": "schemas.api",
    "WireError": "schemas.decoding",
    "decode_ack": "schemas.decoding",
    "decode_ack_from": "schemas.decoding",
    "decode_audit": "schemas.decoding",
    "decode_cancel": "schemas.decoding",
    "decode_chunk": "schemas.decoding",
    "decode_chunk_from": "schemas.decoding",
    "decode_heartbeat": "schemas.decoding",
    "decode_idempotency_claim": "schemas.decoding",
    "decode_job": "schemas.decoding",
    "decode_job_record": "schemas.decoding",
    "decode_reply": "schemas.decoding",
    "decode_result": "schemas.decoding",
    "decode_result_from": "schemas.decoding",
    "decode_running_report": "schemas.decoding",
    "decode_running_report_from": "schemas.decoding",
    "AuditRecord": "schemas.messages",
    "CancelRequest": "schemas.messages",
    "ExecAck": "schemas.messages",
    "ExecJob": "schemas.messages",
    "ExecResult": "schemas.messages",
    "Heartbeat": "schemas.messages",
    "IdempotencyClaim": "schemas.messages",
    "JobRecord": "schemas.messages",
    "OutputChunk": "schemas.messages",
    "Reply": "schemas.messages",
    "ReplyRoute": "schemas.messages",
    "ResultStatus": "schemas.messages",
    "RunningReport": "schemas.messages",
    "encode": "schemas.messages",
    "ANY_QUEUE_GROUP": "schemas.subjects",
    "DEFAULT_PREFIX": "schemas.subjects",
    "Subjects": "schemas.subjects",
    "encode_token": "schemas.subjects",
    "Target": "schemas.targets",
    "TargetKind": "schemas.targets",
    "TargetSyntaxError": "schemas.targets",
    "parse_label": "schemas.targets",
    "parse_target": "schemas.targets",
}
"""Where each name lives: imported on first use, so that a program that needs only the
HTTP bodies (``schemas.api``, as the ``nexec`` command) does not load the decoders,
subjects and targets (docs/performance.md, N6)."""


def __getattr__(name: str) -> Any:
    """Raises: AttributeError: not a name of the package."""
    if name not in _HOMES:
        raise AttributeError(f"module 'schemas' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
