"""What makes an entry of the registry bucket valid, and the heartbeat bounds agents obey.

An entry's identity is its key, never its payload: the key decodes (see
:func:`schemas.subjects.decode_token`) to the agent's hostname, which the
generated NATS permissions let only that agent write. An entry counts only when
that hostname is a valid agent name, the heartbeat in it names the same host,
and every field is within the bounds below. Readers refuse anything else whole.
"""

from __future__ import annotations

import math

from schemas.decoding import WireError, decode_heartbeat
from schemas.messages import Heartbeat
from schemas.subjects import decode_token, encode_token
from schemas.targets import TargetSyntaxError, validate_hostname, validate_label
from schemas.untrusted import shown

MIN_HEARTBEAT_INTERVAL_S = 0.0
"""Exclusive lower bound of an agent's heartbeat interval (it must be more than this)."""
MAX_HEARTBEAT_INTERVAL_S = 300.0
"""Inclusive upper bound of an agent's heartbeat interval: an agent that stops is
forgotten at most three times this after its last heartbeat."""
MAX_AGENT_LABELS = 64
MAX_TEXT_LENGTH = 256
"""Longest ``version`` and ``instance_id``."""
MAX_LOAD_AVERAGES = 3


def registry_key_hostname(key: str) -> str:
    """The hostname a registry key carries: the only source of an entry's identity.

    Raises:
        WireError: the key is not the encoding :func:`schemas.subjects.encode_token`
            gives the string it decodes to, or that string is not a valid agent
            hostname (``_all``, ``''``, slashes, too long...).
    """
    try:
        hostname = validate_hostname(decode_token(key))
    except TargetSyntaxError:
        raise WireError(f"registry key {shown(key)}: not a valid agent hostname") from None
    except ValueError:
        raise WireError(f"registry key {shown(key)}: not a valid token encoding") from None
    if encode_token(hostname) != key:  # e.g. "h_31" for "h1": not the key its agent may write
        raise WireError(f"registry key {shown(key)}: not the canonical key of {hostname!r}")
    return hostname


def decode_heartbeat_from(data: bytes, *, hostname: str) -> Heartbeat:
    """A heartbeat read from ``hostname``'s registry entry.

    Raises:
        WireError: malformed (see :mod:`schemas.decoding`), names another host,
            or a field out of bounds.
    """
    heartbeat = decode_heartbeat(data)
    if heartbeat.hostname != hostname:
        raise WireError(f"registry entry of {hostname!r} names host {shown(heartbeat.hostname)}")
    check_heartbeat_fields(heartbeat)
    return heartbeat


def check_heartbeat_fields(heartbeat: Heartbeat) -> None:
    """Raises: WireError: the interval, a label, a text or a number is out of bounds."""
    if not MIN_HEARTBEAT_INTERVAL_S < heartbeat.interval_s <= MAX_HEARTBEAT_INTERVAL_S:
        raise WireError(
            f"heartbeat interval_s {heartbeat.interval_s!r} outside "
            f"({MIN_HEARTBEAT_INTERVAL_S:g}, {MAX_HEARTBEAT_INTERVAL_S:g}]"
        )
    if len(heartbeat.labels) > MAX_AGENT_LABELS:
        raise WireError(
            f"heartbeat with {len(heartbeat.labels)} labels, more than {MAX_AGENT_LABELS}"
        )
    try:
        for key, value in heartbeat.labels.items():
            validate_label(key, value)
    except TargetSyntaxError as exc:
        raise WireError(f"heartbeat: {exc}") from None
    for name, text in (("version", heartbeat.version), ("instance_id", heartbeat.instance_id)):
        if len(text) > MAX_TEXT_LENGTH:
            raise WireError(
                f"heartbeat {name}: {len(text)} characters, more than {MAX_TEXT_LENGTH}"
            )
    if len(heartbeat.load_avg) > MAX_LOAD_AVERAGES:
        raise WireError(
            f"heartbeat load_avg: {len(heartbeat.load_avg)} numbers, more than {MAX_LOAD_AVERAGES}"
        )
    numbers = [heartbeat.started_at, heartbeat.sent_at, *heartbeat.load_avg]
    if not all(math.isfinite(number) for number in numbers):
        raise WireError("heartbeat started_at, sent_at and load_avg must be finite numbers")
    if heartbeat.jobs_running < 0:
        raise WireError(f"heartbeat jobs_running {heartbeat.jobs_running} is negative")
