"""Wire types, HTTP bodies, target syntax and subject names shared by nexec's processes.

This is the only package that both ``controller`` and ``agentd`` import.
"""

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
    "encode",
    "encode_token",
    "parse_label",
    "parse_target",
]
