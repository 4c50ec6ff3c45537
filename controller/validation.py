"""Turning request bodies and path parts into typed values, or a precise 400."""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any, TypeVar

import msgspec

from controller.errors import BadRequest
from schemas import ExecRequest, ShellRequest, Target, TargetSyntaxError, parse_target

_exec_request_decoder = msgspec.json.Decoder(ExecRequest)
_shell_request_decoder = msgspec.json.Decoder(ShellRequest)
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RequestT = TypeVar("RequestT", ExecRequest, ShellRequest)
_VALIDATION_PATH_RE = re.compile(r"^(?P<reason>.*) - at `\$\.?(?P<path>[^`]*)`$")


def whole_number(text: str) -> int | None:
    """The value of ``text`` if it is ASCII digits only (no sign, no space), else None."""
    return int(text) if text.isascii() and text.isdigit() else None


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
    request = _decode(body, _exec_request_decoder)
    _check_common(request)
    for index, arg in enumerate(request.args):
        if "\0" in arg:
            raise BadRequest(f"args[{index}]: must not contain a NUL byte")
    return request


def parse_shell_request(body: bytes) -> ShellRequest:
    """Decode and check a shell body.

    Raises:
        BadRequest: as :func:`parse_exec_request`.
    """
    request = _decode(body, _shell_request_decoder)
    _check_common(request)
    return request


def _decode(body: bytes, decoder: msgspec.json.Decoder[RequestT]) -> RequestT:
    if not body.strip():
        raise BadRequest("body: a JSON object is required")
    try:
        request = decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(describe_validation_error(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body: invalid JSON ({exc})") from exc
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
    if not request.command.strip():
        raise BadRequest("command: must not be blank")
    if "\0" in request.command:
        raise BadRequest("command: must not contain a NUL byte")
    if request.cwd is not None:
        if "\0" in request.cwd:
            raise BadRequest("cwd: must not contain a NUL byte")
        if not posixpath.isabs(request.cwd):
            raise BadRequest("cwd: must be an absolute path")
    for name, value in request.env.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise BadRequest(
                f"env: invalid variable name {name!r} (expected [A-Za-z_][A-Za-z0-9_]*)"
            )
        if "\0" in value:
            raise BadRequest(f"env.{name}: must not contain a NUL byte")


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


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
