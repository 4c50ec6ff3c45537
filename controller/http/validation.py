"""Turning request bodies and path parts into typed values, or a precise 400."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import msgspec

from controller.errors import BadRequest
from schemas.api import (
    ABSOLUTE_PATH_PATTERN,
    BATCH_PERCENT_PATTERN,
    COMMAND_PATTERN,
    ENV_NAME_PATTERN,
    FAILURES_PERCENT_PATTERN,
    NO_NUL_PATTERN,
    ExecRequest,
    RolloutRequest,
    ShellRequest,
)
from schemas.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from schemas.targets import Target, TargetSyntaxError, parse_target

_exec_request_decoder = msgspec.json.Decoder(ExecRequest)
_shell_request_decoder = msgspec.json.Decoder(ShellRequest)
_COMMAND_RE = re.compile(COMMAND_PATTERN)
_NO_NUL_RE = re.compile(NO_NUL_PATTERN)
_ABSOLUTE_PATH_RE = re.compile(ABSOLUTE_PATH_PATTERN)
_ENV_NAME_RE = re.compile(ENV_NAME_PATTERN)
_BATCH_PERCENT_RE = re.compile(BATCH_PERCENT_PATTERN)
_FAILURES_PERCENT_RE = re.compile(FAILURES_PERCENT_PATTERN)
RequestT = TypeVar("RequestT", ExecRequest, ShellRequest)
MAX_WHOLE_NUMBER_DIGITS = 20
_VALIDATION_PATH_RE = re.compile(r"^(?P<reason>.*) - at `\$\.?(?P<path>[^`]*)`$")


def whole_number(text: str) -> int | None:
    """The value of ``text`` if it is ASCII digits only (no sign, no space; leading zeros
    allowed) with at most 20 significant digits (a 64-bit number), else None."""
    if not (text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0")
    return int(significant or "0") if len(significant) <= MAX_WHOLE_NUMBER_DIGITS else None


def parse_target_text(text: str) -> Target:
    """Raises: BadRequest naming the target and what is wrong with it."""
    try:
        return parse_target(text)
    except TargetSyntaxError as exc:
        raise BadRequest(f"target: {exc}") from exc


def parse_exec_request(body: bytes) -> ExecRequest:
    """Decode and check an exec body.

    Raises:
        BadRequest: not JSON, not an object, a field of the wrong type or out
            of range, an unknown field, a blank command, a NUL byte, a
            relative ``cwd`` or an invalid ``env`` name; ``details`` names the field.
    """
    request = _decode(body, _exec_request_decoder, ExecRequest)
    _check_common(request)
    for index, arg in enumerate(request.args):
        if not _NO_NUL_RE.fullmatch(arg):
            raise BadRequest(f"args[{index}]: must not contain a NUL byte")
    return request


def parse_shell_request(body: bytes) -> ShellRequest:
    """Decode and check a shell body.

    Raises:
        BadRequest: as :func:`parse_exec_request`.
    """
    request = _decode(body, _shell_request_decoder, ShellRequest)
    _check_common(request)
    return request


def _decode(
    body: bytes, decoder: msgspec.json.Decoder[RequestT], model: type[RequestT]
) -> RequestT:
    if not body.strip():
        raise BadRequest("body: a JSON object is required")
    try:
        request = decoder.decode(body)
    except msgspec.ValidationError:
        request = _decode_whole_floats(body, model)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body: invalid JSON ({exc})") from exc
    except RecursionError:
        raise BadRequest("body: JSON nested too deep") from None
    reject_duplicate_keys(body)
    return request


def reject_duplicate_keys(body: bytes) -> None:
    """msgspec keeps the last of two equal keys; a second parse (stdlib, only of bodies
    msgspec accepted, at most ``max_body_bytes``) finds them.

    Raises:
        BadRequest: an object in ``body`` has the same key twice; details name it.
    """
    try:
        json.loads(body, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # JSON msgspec took but the stdlib does not (huge numbers)
        raise BadRequest(f"body: invalid JSON ({exc})") from exc
    except RecursionError:
        raise BadRequest("body: JSON nested too deep") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Raises: BadRequest naming the first key given twice."""
    unique = dict(pairs)
    if len(unique) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise BadRequest(f"body: duplicate key {key!r}")
            seen.add(key)
    return unique


def _decode_whole_floats(body: bytes, model: type[RequestT]) -> RequestT:
    """Decode again, reading a float with no fraction (``30.0``) as the integer it is in
    JSON's one number type (and in JSON Schema's ``integer``), which msgspec refuses for
    an ``int`` field. Only the top level and the ``rollout`` object hold integers. Off
    the hot path: only after the plain decode failed.

    Raises:
        BadRequest: the body is not JSON, or still invalid; ``details`` names the field.
    """
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:  # past the field that failed first
        raise BadRequest(f"body: invalid JSON ({exc})") from exc
    except RecursionError:
        raise BadRequest("body: JSON nested too deep") from None
    if isinstance(data, dict):
        data = _whole_floats_as_ints(data)
        if isinstance(data.get("rollout"), dict):
            data["rollout"] = _whole_floats_as_ints(data["rollout"])
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:
        raise BadRequest(describe_validation_error(str(exc))) from exc


def _whole_floats_as_ints(data: dict[str, Any]) -> dict[str, Any]:
    return {
        name: int(value) if isinstance(value, float) and value.is_integer() else value
        for name, value in data.items()
    }


def describe_validation_error(message: str) -> str:
    """``Expected `int`, got `str` - at `$.timeout``` → ``timeout: expected `int`, got `str```."""
    match = _VALIDATION_PATH_RE.match(message)
    if match is None:
        if message.startswith("Expected `object`"):
            return f"body: must be a JSON object ({message[0].lower()}{message[1:]})"
        return f"body: {message[0].lower()}{message[1:]}"
    reason = match["reason"]
    return f"{match['path'] or 'body'}: {reason[0].lower()}{reason[1:]}"


def _check_common(request: ExecRequest | ShellRequest) -> None:
    """The patterns of ``schemas.api`` decide; the message says which rule failed."""
    if not _COMMAND_RE.fullmatch(request.command):
        rule = "must not contain a NUL byte" if "\0" in request.command else "must not be blank"
        raise BadRequest(f"command: {rule}")
    if request.cwd is not None and not _ABSOLUTE_PATH_RE.fullmatch(request.cwd):
        rule = "must not contain a NUL byte" if "\0" in request.cwd else "must be an absolute path"
        raise BadRequest(f"cwd: {rule}")
    for name, value in request.env.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise BadRequest(f"env: invalid variable name {name!r} (expected {ENV_NAME_PATTERN})")
        if not _NO_NUL_RE.fullmatch(value):
            raise BadRequest(f"env.{name}: must not contain a NUL byte")
    if request.rollout is not None:
        _check_rollout(request.rollout)


def _check_rollout(rollout: RolloutRequest) -> None:
    """The percentages' patterns (the numbers' ranges msgspec checked).

    Raises:
        BadRequest: ``rollout.batch_size`` or ``rollout.max_failures`` is a string that
            is not a percentage in range; details name the field.
    """
    batch, failures = rollout.batch_size, rollout.max_failures
    if isinstance(batch, str) and not _BATCH_PERCENT_RE.fullmatch(batch):
        raise BadRequest(
            f'rollout.batch_size: expected a whole number >= 1 or "N%" with N from 1 to 100, '
            f"got {batch[:20]!r}"
        )
    if isinstance(failures, str) and not _FAILURES_PERCENT_RE.fullmatch(failures):
        raise BadRequest(
            'rollout.max_failures: expected a whole number >= 0 or "N%" with N from 0 '
            f"to 100, got {failures[:20]!r}"
        )


CURSOR_PATTERN = r"^0*[1-9][0-9]{0,19}$"
"""A page cursor: a stream sequence, a 64-bit whole number from 1 (leading zeros allowed)."""
MAX_EVENT_ID = 2**63 - 1
"""The largest ``Last-Event-ID`` of a job's output stream (a stream sequence)."""


def parse_page_size(text: str | None) -> int:
    """``?limit=`` of a paged listing: 1 to 500, default 50.

    Raises:
        BadRequest: not a whole number in range.
    """
    if text is None:
        return DEFAULT_PAGE_SIZE
    size = whole_number(text)
    if size is None or not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest(f"limit: expected a whole number from 1 to {MAX_PAGE_SIZE}")
    return size


def parse_event_id(text: str) -> int:
    """``Last-Event-ID`` of a job's output stream: a whole number from 0 to MAX_EVENT_ID.

    Raises:
        BadRequest: anything else.
    """
    event_id = whole_number(text)
    if event_id is None or event_id > MAX_EVENT_ID:
        raise BadRequest("Last-Event-ID: expected the id of an event of this stream")
    return event_id
