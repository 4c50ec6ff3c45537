"""``GET /job/{id}/output`` as an async iterator of typed events, resuming after a
dropped connection with ``Last-Event-ID``.

The client asks for NDJSON (``Accept: application/x-ndjson``): one
``{"event", "id", "data"}`` object per line. Keepalives are skipped. A stream that ends
(or breaks) before its ``end`` event is reopened with ``Last-Event-ID`` set to the last
event id seen, so no event comes twice and none is lost; waiting the retry policy's
``backoff_s`` between attempts, and giving up (``ConnectionFailed`` or ``TimedOut``)
after that many failures in a row without a new event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal

import aiohttp
import msgspec
from yarl import URL

from nexec._http import Http, translated
from nexec.errors import ConnectionFailed, InvalidResponse, TransportError
from schemas.api import JobEnd
from schemas.messages import ExecResult, OutputChunk

NDJSON = "application/x-ndjson"
KEEPALIVE_S = 15.0
"""The controller sends a keepalive after this long without events (docs/jobs.md)."""
MAX_EVENT_BYTES = 64 * 1024 * 1024
"""The longest event line read: NATS's own limit on a message (a result is one)."""


class OutputEvent(msgspec.Struct, frozen=True):
    """A chunk of a host's output, as it was produced."""

    id: int | None
    """The event's id: resume after it with ``last_event_id``."""
    data: OutputChunk
    kind: Literal["output"] = "output"


class ResultEvent(msgspec.Struct, frozen=True):
    """A host's final result. ``id`` is None for the ``no_reply`` results the controller
    adds at the deadline."""

    id: int | None
    data: ExecResult
    kind: Literal["result"] = "result"


class EndEvent(msgspec.Struct, frozen=True):
    """The job's state once it is done: the last event."""

    id: int | None
    data: JobEnd
    kind: Literal["end"] = "end"


Event = OutputEvent | ResultEvent | EndEvent
"""One event of a job's live output; ``kind`` tells which (and narrows the type)."""


class _Line(msgspec.Struct, frozen=True):
    event: str
    id: int | None = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_LINE = msgspec.json.Decoder(_Line)
_EVENTS: dict[str, Callable[[int | None, Any], Event]] = {
    "output": OutputEvent,
    "result": ResultEvent,
    "end": EndEvent,
}
_DATA: dict[str, msgspec.json.Decoder[Any]] = {
    "output": msgspec.json.Decoder(OutputChunk),
    "result": msgspec.json.Decoder(ExecResult),
    "end": msgspec.json.Decoder(JobEnd),
}


def decode_event(line: bytes) -> Event | None:
    """The event on one NDJSON line; None for a keepalive, a blank line or an event kind
    this client does not know.

    Raises:
        InvalidResponse: the line does not decode.
    """
    if not line.strip():
        return None
    try:
        decoded = _LINE.decode(line)
        decoder = _DATA.get(decoded.event)
        if decoder is None:
            return None
        data = decoder.decode(decoded.data)
    except msgspec.DecodeError as exc:
        raise InvalidResponse(f"an output event does not decode: {exc}") from exc
    return _EVENTS[decoded.event](decoded.id, data)


async def follow(
    http: Http, url: URL, *, last_event_id: int, client_timeout: aiohttp.ClientTimeout
) -> AsyncIterator[Event]:
    """Every event of the job after ``last_event_id`` until ``end``, reconnecting.

    Raises:
        APIError: the controller refused (after the retries of 429 and 503).
        ConnectionFailed, TimedOut: more failures in a row than the policy retries.
        InvalidResponse: an event that does not decode.
    """
    failures = 0
    while True:
        try:
            async with contextlib.aclosing(
                _one_stream(http, url, last_event_id, client_timeout)
            ) as events:
                async for event in events:
                    failures = 0
                    if event.id is not None:
                        last_event_id = event.id
                    yield event
                    if event.kind == "end":
                        return
            dropped: TransportError = ConnectionFailed(f"GET {url}: ended before its end event")
        except TransportError as exc:
            dropped = exc
        if failures >= len(http.retry.backoff_s):
            raise dropped
        await asyncio.sleep(http.retry.backoff_s[failures])
        failures += 1


async def _one_stream(
    http: Http, url: URL, last_event_id: int, client_timeout: aiohttp.ClientTimeout
) -> AsyncGenerator[Event, None]:
    """The events of one connection, after ``last_event_id``, until it ends.

    Raises:
        APIError, ConnectionFailed, TimedOut, InvalidResponse.
    """
    headers = {"Accept": NDJSON}
    if last_event_id:
        headers["Last-Event-ID"] = str(last_event_id)
    async with http.stream(url, client_timeout=client_timeout, headers=headers) as response:
        with translated("GET", url):
            async for line in _lines(response.content):
                event = decode_event(line)
                if event is not None:
                    yield event


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The NDJSON lines of a body, each up to ``MAX_EVENT_BYTES`` (aiohttp's own line
    reader stops at twice its buffer, 512 KiB: less than one result may take).

    Raises:
        InvalidResponse: a line longer than ``MAX_EVENT_BYTES``.
    """
    pending = bytearray()
    async for data in content.iter_any():
        searched = len(pending)
        pending += data
        while (end := pending.find(b"\n", searched)) != -1:
            yield bytes(pending[:end])
            del pending[: end + 1]
            searched = 0
        if len(pending) > MAX_EVENT_BYTES:
            raise InvalidResponse(f"an output event is longer than {MAX_EVENT_BYTES} bytes")
    if pending:
        yield bytes(pending)
