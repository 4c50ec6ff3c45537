"""Total decoding of every wire type: whatever arrives, one error type or a valid message.

Everything read from NATS or JetStream is hostile until it passed through one of
these functions. msgspec alone is not total: JSON nested too deep raises
``RecursionError``, and a single tagged Struct accepts a message without its
``type`` tag. Here every failure becomes :class:`WireError`, the tag is
required (the decoders read a tagged union of the wanted type and a sentinel),
and a message larger than :data:`MAX_WIRE_BYTES` is refused unread.

The ``*_from`` functions also apply the identity rule: a message that speaks
for a host (and a job) counts only when its payload names the host and the job
that its subject or key carries; the caller passes those, taken from the subject.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

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
)
from schemas.untrusted import SHOWN_CHARS

MAX_WIRE_BYTES = 8 * 1024 * 1024
"""No nexec message is larger (NATS's own max_payload is 1 MiB by default, 64 MiB at most)."""

T = TypeVar("T", bound=msgspec.Struct)


class WireError(ValueError):
    """A message that is not a valid nexec message of the expected type, or that
    speaks for another host or job than its subject says."""


class _NotThisType(msgspec.Struct, frozen=True, tag_field="type", tag="nexec.invalid"):
    """Sentinel in every decoder's union: it makes msgspec require the ``type`` tag."""


class _Decoder(Generic[T]):
    """Decodes one wire type totally."""

    def __init__(self, wire_type: type[T]) -> None:
        self._name = wire_type.__name__
        self._decoder: msgspec.json.Decoder[T | _NotThisType] = msgspec.json.Decoder(
            wire_type | _NotThisType
        )

    def __call__(self, data: bytes) -> T:
        """Raises: WireError: oversize, not JSON, nested too deep, wrong type or fields."""
        if len(data) > MAX_WIRE_BYTES:
            raise WireError(f"{self._name}: {len(data)} bytes, more than {MAX_WIRE_BYTES}")
        try:
            message = self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise WireError(f"{self._name}: {_why(exc)}") from None
        except RecursionError:
            raise WireError(f"{self._name}: JSON nested too deep") from None
        if isinstance(message, _NotThisType):
            raise WireError(f"{self._name}: wrong type tag")
        return message


class _ReplyDecoder:
    """An ack or a result (already a tagged union, so the tag is required)."""

    _decoder: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)

    def __call__(self, data: bytes) -> Reply:
        """Raises: WireError: oversize, not JSON, nested too deep, neither an ack nor a result."""
        if len(data) > MAX_WIRE_BYTES:
            raise WireError(f"reply: {len(data)} bytes, more than {MAX_WIRE_BYTES}")
        try:
            return self._decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise WireError(f"reply: {_why(exc)}") from None
        except RecursionError:
            raise WireError("reply: JSON nested too deep") from None


def _why(exc: msgspec.DecodeError) -> str:
    """msgspec's reason, cut short: it quotes the offending value (e.g. an invalid enum
    value) whole, and a message may be a megabyte of untrusted text."""
    reason = str(exc)
    limit = 4 * SHOWN_CHARS
    return reason if len(reason) <= limit else f"{reason[:limit]}... ({len(reason)} characters)"


decode_job = _Decoder(ExecJob)
decode_result = _Decoder(ExecResult)
decode_ack = _Decoder(ExecAck)
decode_heartbeat = _Decoder(Heartbeat)
decode_job_record = _Decoder(JobRecord)
decode_cancel = _Decoder(CancelRequest)
decode_chunk = _Decoder(OutputChunk)
decode_audit = _Decoder(AuditRecord)
decode_idempotency_claim = _Decoder(IdempotencyClaim)
decode_reply = _ReplyDecoder()


def decode_result_from(data: bytes, *, job_id: str, hostname: str) -> ExecResult:
    """A result read from ``hostname``'s result subject of ``job_id``.

    Raises:
        WireError: malformed, or the payload names another job or host.
    """
    result = decode_result(data)
    _check_speaker("result", result.job_id, result.hostname, job_id, hostname)
    return result


def decode_ack_from(data: bytes, *, job_id: str, hostname: str) -> ExecAck:
    """An acknowledgement read from ``hostname``'s ack subject of ``job_id``.

    Raises:
        WireError: malformed, or the payload names another job or host.
    """
    ack = decode_ack(data)
    _check_speaker("ack", ack.job_id, ack.hostname, job_id, hostname)
    return ack


def decode_chunk_from(data: bytes, *, job_id: str, hostname: str) -> OutputChunk:
    """An output chunk read from ``hostname``'s output subject of ``job_id``.

    Raises:
        WireError: malformed, or the payload names another job or host.
    """
    chunk = decode_chunk(data)
    _check_speaker("output chunk", chunk.job_id, chunk.hostname, job_id, hostname)
    return chunk


def _check_speaker(kind: str, said_job: str, said_host: str, job_id: str, hostname: str) -> None:
    """Raises: WireError: the payload's job or host is not the one its subject carries."""
    if said_host != hostname:
        raise WireError(f"{kind} on {hostname!r}'s subject names host {said_host!r}")
    if said_job != job_id:
        raise WireError(f"{kind} on the subject of job {job_id!r} names job {said_job!r}")
