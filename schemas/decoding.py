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
    OUTPUT_STREAMS,
    AuditRecord,
    CancelRequest,
    ExecAck,
    ExecJob,
    ExecResult,
    FleetPauseRecord,
    Heartbeat,
    HostSlots,
    IdempotencyClaim,
    JobRecord,
    OutputChunk,
    Reply,
    RolloutState,
    RunningReport,
)
from schemas.untrusted import SHOWN_CHARS, shown

MAX_WIRE_BYTES = 8 * 1024 * 1024
"""No nexec message is larger (NATS's own max_payload is 1 MiB by default, 64 MiB at most)."""

T = TypeVar("T", bound=msgspec.Struct)
U = TypeVar("U")


class WireError(ValueError):
    """A message that is not a valid nexec message of the expected type, or that
    speaks for another host or job than its subject says."""


class _NotThisType(msgspec.Struct, frozen=True, tag_field="type", tag="nexec.invalid"):
    """Sentinel in every decoder's union: it makes msgspec require the ``type`` tag."""


def _decode_totally(name: str, decoder: msgspec.json.Decoder[U], data: bytes) -> U:
    """Raises: WireError: oversize, not JSON, nested too deep, wrong type or fields."""
    if len(data) > MAX_WIRE_BYTES:
        raise WireError(f"{name}: {len(data)} bytes, more than {MAX_WIRE_BYTES}")
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise WireError(f"{name}: {_why(exc)}") from None
    except RecursionError:
        raise WireError(f"{name}: JSON nested too deep") from None


class _Decoder(Generic[T]):
    """Decodes one wire type totally, its ``type`` tag required."""

    def __init__(self, wire_type: type[T]) -> None:
        self._name = wire_type.__name__
        self._decoder: msgspec.json.Decoder[T | _NotThisType] = msgspec.json.Decoder(
            wire_type | _NotThisType
        )

    def __call__(self, data: bytes) -> T:
        """Raises: WireError: oversize, not JSON, nested too deep, wrong type or fields."""
        message = _decode_totally(self._name, self._decoder, data)
        if isinstance(message, _NotThisType):
            raise WireError(f"{self._name}: wrong type tag")
        return message


_reply_decoder: msgspec.json.Decoder[Reply] = msgspec.json.Decoder(Reply)


def decode_reply(data: bytes) -> Reply:
    """An ack or a result (a tagged union already, so the tag is required).

    Raises:
        WireError: oversize, not JSON, nested too deep, neither an ack nor a result.
    """
    return _decode_totally("reply", _reply_decoder, data)


def _why(exc: msgspec.DecodeError) -> str:
    """msgspec's reason, cut short and with control characters escaped: it quotes the
    offending value (e.g. an invalid enum value) whole, newlines included, and a
    message may be a megabyte of untrusted text."""
    reason = str(exc).encode("unicode_escape").decode("ascii")
    limit = 4 * SHOWN_CHARS
    return reason if len(reason) <= limit else f"{reason[:limit]}... ({len(reason)} characters)"


decode_job = _Decoder(ExecJob)
decode_result = _Decoder(ExecResult)
decode_ack = _Decoder(ExecAck)
decode_heartbeat = _Decoder(Heartbeat)
decode_job_record = _Decoder(JobRecord)
decode_cancel = _Decoder(CancelRequest)


class _ChunkDecoder(_Decoder[OutputChunk]):
    """Decodes an output chunk, whose stream must be ``stdout`` or ``stderr``."""

    def __call__(self, data: bytes) -> OutputChunk:
        """Raises: WireError: malformed (see :class:`_Decoder`), or another stream name."""
        chunk = super().__call__(data)
        if chunk.stream not in OUTPUT_STREAMS:
            raise WireError(f"OutputChunk: stream {shown(chunk.stream)}, not stdout or stderr")
        return chunk


decode_chunk = _ChunkDecoder(OutputChunk)
decode_audit = _Decoder(AuditRecord)
decode_idempotency_claim = _Decoder(IdempotencyClaim)
decode_running_report = _Decoder(RunningReport)
decode_fleet_pause = _Decoder(FleetPauseRecord)
decode_rollout_state = _Decoder(RolloutState)
decode_host_slots = _Decoder(HostSlots)


SpokenT = TypeVar("SpokenT", ExecResult, ExecAck, OutputChunk)


class _SpeakingFor(Generic[SpokenT]):
    """Decodes a message that speaks for one host about one job, both taken from the
    subject it arrived on: the payload must name the same."""

    def __init__(self, decode: _Decoder[SpokenT], kind: str) -> None:
        self._decode: _Decoder[SpokenT] = decode
        self._kind = kind

    def __call__(self, data: bytes, *, job_id: str, hostname: str) -> SpokenT:
        """Raises: WireError: malformed, or the payload names another job or host."""
        message = self._decode(data)
        if message.hostname != hostname:
            raise WireError(
                f"{self._kind} on {hostname!r}'s subject names host {message.hostname!r}"
            )
        if message.job_id != job_id:
            raise WireError(
                f"{self._kind} on the subject of job {job_id!r} names job {message.job_id!r}"
            )
        return message


decode_result_from = _SpeakingFor(decode_result, "result")
"""A result read from ``hostname``'s result record subject of ``job_id``."""
decode_ack_from = _SpeakingFor(decode_ack, "ack")
"""An acknowledgement read from ``hostname``'s ack subject of ``job_id``."""
decode_chunk_from = _SpeakingFor(decode_chunk, "output chunk")
"""An output chunk read from ``hostname``'s output record subject of ``job_id``."""


def decode_running_report_from(data: bytes, *, hostname: str) -> RunningReport:
    """A running report read from ``hostname``'s running subject.

    Raises:
        WireError: malformed (see above), or the payload names another host.
    """
    report = decode_running_report(data)
    if report.hostname != hostname:
        raise WireError(
            f"running report on {hostname!r}'s subject names host {shown(report.hostname)}"
        )
    return report
