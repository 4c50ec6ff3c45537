"""Making a result fit in one NATS message."""

from __future__ import annotations

import msgspec

from schemas.messages import ExecResult, encode

OMITTED_MARKER = "\n[nexec: output cut to fit the NATS max payload]\n"


def encode_to_fit(result: ExecResult, max_payload: int) -> bytes:
    """Encode ``result``; while it exceeds ``max_payload`` bytes, cut the longer output.

    The middle of the output goes (head and tail stay) and its ``*_truncated``
    flag is set; the byte counts keep what the process really wrote.
    """
    data = encode(result)
    while len(data) > max_payload and (result.stdout or result.stderr):
        excess = len(data) - max_payload + len(OMITTED_MARKER)
        if len(result.stdout) >= len(result.stderr):
            result = msgspec.structs.replace(
                result, stdout=_cut_middle(result.stdout, excess), stdout_truncated=True
            )
        else:
            result = msgspec.structs.replace(
                result, stderr=_cut_middle(result.stderr, excess), stderr_truncated=True
            )
        data = encode(result)
    return data


def _cut_middle(text: str, at_least: int) -> str:
    keep = max(len(text) - at_least - len(OMITTED_MARKER), 0)
    if keep == 0:
        return ""
    head = keep // 2
    return text[:head] + OMITTED_MARKER + text[len(text) - (keep - head) :]
