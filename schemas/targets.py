"""The target syntax shared by the HTTP path, the job on the wire and the agent.

A target is one of:

- a hostname (``web1``, ``web1.example.com``): exactly that agent;
- ``_any``: exactly one agent, load-balanced by a NATS queue group;
- ``_all``: every agent;
- a label selector ``key:value`` or ``k1:v1,k2:v2``: the agents carrying all
  those labels.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.untrusted import shown

ANY = "_any"
ALL = "_all"
MAX_HOSTNAME_LENGTH = 253

HOSTNAME_PATTERN = r"^[A-Za-z0-9-][A-Za-z0-9_-]{0,62}(\.[A-Za-z0-9_-]{1,63})*$"
"""Dot-separated parts of 1-63 characters of ``A-Za-z0-9_-``, not starting with ``_``."""
_LABEL_PART = r"[A-Za-z0-9._/-]{1,63}"
_HOSTNAME_RE = re.compile(HOSTNAME_PATTERN)
_LABEL_PART_RE = re.compile(rf"^{_LABEL_PART}$")
_LABEL = rf"{_LABEL_PART}:{_LABEL_PART}"
# The one rule parse_target checks with a dict: no key twice. The lookahead refuses a
# selector in which some label's key comes back as the key of a later label.
_NO_KEY_TWICE = r"(?!(?:[^,]*,)*([^:,]*):[^,]*,(?:[^,]*,)*\1:)"
LABEL_SELECTOR_PATTERN = rf"^{_NO_KEY_TWICE}{_LABEL}(,{_LABEL})*$"


class TargetSyntaxError(ValueError):
    """A target, hostname or label is malformed; the message says why."""


class TargetKind(enum.StrEnum):
    HOST = "host"
    ANY = "any"
    ALL = "all"
    LABELS = "labels"


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed target. ``labels`` is sorted by key and only set for LABELS."""

    kind: TargetKind
    hostname: str = ""
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, hostname: str, labels: Mapping[str, str]) -> bool:
        """Whether an agent with this hostname and these labels is addressed."""
        if self.kind is TargetKind.HOST:
            return hostname == self.hostname
        if self.kind is TargetKind.LABELS:
            return all(labels.get(key) == value for key, value in self.labels)
        return True


def validate_hostname(hostname: str) -> str:
    """Return ``hostname`` if it is a valid agent hostname.

    Dots separate parts of 1 to 63 characters of ``A-Za-z0-9_-``; the name may
    not start with ``_`` (reserved for ``_any`` and ``_all``) and is at most
    253 characters long.

    Raises:
        TargetSyntaxError: the hostname is malformed.
    """
    if len(hostname) > MAX_HOSTNAME_LENGTH or not _HOSTNAME_RE.fullmatch(hostname):
        raise TargetSyntaxError(
            f"invalid hostname {shown(hostname)}: expected dot-separated parts of 1-63 characters "
            "from A-Za-z0-9_- not starting with '_', at most 253 characters"
        )
    return hostname


def parse_label(text: str) -> tuple[str, str]:
    """Parse one ``key:value`` label.

    Raises:
        TargetSyntaxError: not exactly one ``:``, or a key or value that is
            empty, longer than 63 characters or outside ``A-Za-z0-9._/-``.
    """
    key, sep, value = text.partition(":")
    if not sep or ":" in value:
        raise TargetSyntaxError(f"invalid label {shown(text)}: expected key:value")
    _check_label(key, value, text)
    return key, value


def validate_label(key: str, value: str) -> tuple[str, str]:
    """Return ``(key, value)`` if both are valid label parts (as :func:`parse_label` checks).

    Raises:
        TargetSyntaxError: a key or value that is empty, longer than 63
            characters or outside ``A-Za-z0-9._/-``.
    """
    _check_label(key, value, f"{key}:{value}")
    return key, value


def _check_label(key: str, value: str, label: str) -> None:
    """The one label syntax rule. Raises: TargetSyntaxError: a part breaks it."""
    for part, what in ((key, "key"), (value, "value")):
        if not _LABEL_PART_RE.fullmatch(part):
            raise TargetSyntaxError(
                f"invalid label {shown(label)}: "
                f"the {what} must be 1-63 characters from A-Za-z0-9._/-"
            )


def parse_target(text: str) -> Target:
    """Parse the ``{hostname}`` part of ``/node/{hostname}/...``.

    Raises:
        TargetSyntaxError: the target is malformed, or a label selector names
            one key twice.
    """
    if text == ANY:
        return Target(TargetKind.ANY)
    if text == ALL:
        return Target(TargetKind.ALL)
    if ":" not in text:
        return Target(TargetKind.HOST, hostname=validate_hostname(text))
    labels: dict[str, str] = {}
    for item in text.split(","):
        key, value = parse_label(item)
        if key in labels:
            raise TargetSyntaxError(
                f"invalid label selector {shown(text)}: key {key!r} given twice"
            )
        labels[key] = value
    return Target(TargetKind.LABELS, labels=tuple(sorted(labels.items())))


def target_json_schema() -> dict[str, object]:
    """The JSON Schema of a target exactly as :func:`parse_target` accepts it."""
    return {
        "anyOf": [
            {"type": "string", "enum": [ANY, ALL]},
            {"type": "string", "pattern": HOSTNAME_PATTERN, "maxLength": MAX_HOSTNAME_LENGTH},
            {"type": "string", "pattern": LABEL_SELECTOR_PATTERN},
        ]
    }
