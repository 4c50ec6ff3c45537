"""Writing to JetStream streams, acknowledged, with little work per write.

nats-py's ``JetStreamContext.publish`` is a full request: a task, a timer and a
future per write, and the acknowledgement parsed into a dataclass; in a busy
agent that was a third of its CPU (docs/performance.md). A :class:`StreamWriter`
keeps one reply subscription, one future per write and one timer for every
write in flight, and decodes the acknowledgement with msgspec. The errors it
raises are nats-py's own, so callers handle both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import Callable

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

NO_RESPONDERS_STATUS = "503"
# The header giving one message its own time to live, in whole seconds (nats-server 2.11+).
MSG_TTL_HEADER = "Nats-TTL"


def is_no_responders(msg: Msg) -> bool:
    """Whether ``msg`` is NATS's "no responders" status: nobody was subscribed to the
    subject a request (or a publish with a reply subject) went to."""
    headers = msg.headers or {}
    return not msg.data and headers.get("Status") == NO_RESPONDERS_STATUS


class StreamAck(msgspec.Struct, frozen=True):
    """JetStream's acknowledgement of a stored message."""

    stream: str
    seq: int
    duplicate: bool = False


class _ApiErrorBody(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _AckReply(msgspec.Struct, frozen=True):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiErrorBody | None = None


_decode_ack_reply = msgspec.json.Decoder(_AckReply).decode


class StreamWriter:
    """Publishes messages to subjects a stream captures and waits for the stream's
    acknowledgement. Call :meth:`open` once connected, :meth:`close` when done.

    A write not acknowledged within its timeout fails with nats-py's
    ``TimeoutError``; the one timer that enforces this fires at the earliest
    deadline of the writes in flight, so no write waits much past its own.
    """

    def __init__(
        self, nc: Client, *, timeout_s: float, stream_of: Callable[[str], str] | None = None
    ) -> None:
        """``stream_of`` names the stream a subject is written to, for :attr:`failures`
        (without it, every failure counts under ``""``)."""
        self._nc = nc
        self._timeout_s = timeout_s
        self._stream_of = stream_of
        self._prefix = ""
        self._subscription: Subscription | None = None
        self._tokens = itertools.count()
        self._in_flight: dict[str, tuple[asyncio.Future[StreamAck], float, str]] = {}
        """Reply token -> (the write's acknowledgement, its loop-time deadline, subject)."""
        self.failures: Counter[str] = Counter()
        """Writes that failed (not published, refused, no stream, no acknowledgement in
        time), by stream."""
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0

    @property
    def in_flight(self) -> int:
        """Writes sent and neither acknowledged nor timed out."""
        return len(self._in_flight)

    async def open(self) -> None:
        """Subscribe the reply subject on the connected client; later calls do nothing.

        Raises:
            nats.errors.Error: the client is not connected.
        """
        if self._subscription is not None:
            return
        prefix = f"{self._nc.new_inbox()}."
        self._subscription = await self._nc.subscribe(f"{prefix}*", cb=self._on_reply)
        self._prefix = prefix

    async def close(self) -> None:
        """Stop listening for acknowledgements (writes in flight then time out)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def write(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> StreamAck:
        """Publish and wait until the stream has stored the message.

        Raises:
            nats.js.errors.APIError: the stream refused it (e.g. an expected-sequence header).
            nats.js.errors.NoStreamResponseError: no stream captures ``subject``.
            nats.errors.TimeoutError: no acknowledgement within ``timeout_s``.
            nats.errors.Error: not opened, or the connection is closed or its buffer full.
        """
        acknowledged = await self.send(subject, payload, headers=headers, timeout_s=timeout_s)
        return await acknowledged

    async def send(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> asyncio.Future[StreamAck]:
        """Publish; return the acknowledgement to come, which fails like :meth:`write`.

        Raises:
            nats.errors.Error: not opened, or the connection is closed or its buffer full.
        """
        if self._subscription is None:
            raise nats.errors.Error("StreamWriter used before open()")
        loop = asyncio.get_running_loop()
        token = str(next(self._tokens))
        acknowledged: asyncio.Future[StreamAck] = loop.create_future()
        deadline = loop.time() + (self._timeout_s if timeout_s is None else timeout_s)
        self._in_flight[token] = (acknowledged, deadline, subject)
        try:
            await self._nc.publish(subject, payload, reply=self._prefix + token, headers=headers)
        except BaseException:
            self._in_flight.pop(token, None)
            self._count_failure(subject)
            raise
        if self._expiry is None or deadline < self._expiry_at:
            self._expire_at(loop, deadline)
        return acknowledged

    async def _on_reply(self, msg: Msg) -> None:
        entry = self._in_flight.pop(msg.subject[len(self._prefix) :], None)
        if entry is None or entry[0].done():
            return  # late: the write already timed out
        acknowledged, _, subject = entry
        if is_no_responders(msg):
            self._fail(acknowledged, subject, nats.js.errors.NoStreamResponseError())
            return
        try:
            reply = _decode_ack_reply(msg.data)
        except msgspec.DecodeError as exc:
            error = nats.js.errors.APIError(description=f"bad ack: {exc}")
            self._fail(acknowledged, subject, error)
            return
        if reply.error is not None:
            try:
                nats.js.errors.APIError.from_error(msgspec.structs.asdict(reply.error))
            except nats.js.errors.APIError as exc:
                self._fail(acknowledged, subject, exc)
            return
        acknowledged.set_result(StreamAck(reply.stream, reply.seq, reply.duplicate))

    def _fail(
        self, acknowledged: asyncio.Future[StreamAck], subject: str, error: Exception
    ) -> None:
        acknowledged.set_exception(error)
        self._count_failure(subject)

    def _count_failure(self, subject: str) -> None:
        self.failures[self._stream_of(subject) if self._stream_of else ""] += 1

    def _expire_at(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = loop.call_at(when, self._expire, loop)
        self._expiry_at = when

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail every write past its deadline; come back at the next deadline."""
        self._expiry = None
        now = loop.time()
        next_deadline = None
        for token, (acknowledged, deadline, subject) in list(self._in_flight.items()):
            if deadline <= now:
                del self._in_flight[token]
                if not acknowledged.done():
                    self._fail(acknowledged, subject, nats.errors.TimeoutError())
            elif next_deadline is None or deadline < next_deadline:
                next_deadline = deadline
        if next_deadline is not None:
            self._expire_at(loop, next_deadline)
