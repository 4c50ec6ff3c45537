"""Showing untrusted text (from the network) in log lines and error messages."""

from __future__ import annotations

SHOWN_CHARS = 64
"""How much of an untrusted string a message quotes."""


def shown(text: str) -> str:
    """``repr`` of untrusted text, cut to its first characters so that it fits in a log line."""
    if len(text) <= SHOWN_CHARS:
        return repr(text)
    return f"{text[:SHOWN_CHARS]!r}... ({len(text)} characters)"
