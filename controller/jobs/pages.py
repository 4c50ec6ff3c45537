"""Pages of a stream, newest first, at a bounded cost: the job list and the audit
trail walk their streams' sequence numbers with :class:`NewestFirst`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from nats.js import JetStreamContext

from controller.http.validation import CURSOR_PATTERN, whole_number

_CURSOR_RE = re.compile(CURSOR_PATTERN)

PAGE_READS_PER_ITEM = 4
"""A page of ``limit`` items reads at most this many times ``limit`` stored records:
a filtered page (a key's scope, ``?key=``) may come back shorter than ``limit``, with a
``next_cursor`` to go on from."""


@dataclass(slots=True)
class NewestFirst:
    """Walks a stream's sequence numbers downwards, from a page cursor or the end,
    reading at most ``PAGE_READS_PER_ITEM * limit`` of them.

    The cost of a page is one stream-info request plus the reads the caller makes,
    however many messages the stream holds.
    """

    first_seq: int
    seq: int
    """The next sequence to read."""
    reads_left: int

    @classmethod
    async def start(
        cls, js: JetStreamContext, stream: str, cursor: str | None, *, limit: int
    ) -> NewestFirst:
        """Raises: nats.errors.Error or TimeoutError from JetStream; ValueError for a
        cursor this class did not hand out."""
        info = await js.stream_info(stream)
        last_seq = info.state.last_seq
        seq = last_seq if cursor is None else min(parse_cursor(cursor) - 1, last_seq)
        return cls(
            first_seq=max(info.state.first_seq, 1),
            seq=seq,
            reads_left=PAGE_READS_PER_ITEM * limit,
        )

    def has_more(self) -> bool:
        """Whether older messages are left in the stream."""
        return self.seq >= self.first_seq

    def can_take(self) -> bool:
        """Whether this page may read another message: one is left, and the read bound is not."""
        return self.has_more() and self.reads_left > 0

    def take(self) -> int:
        seq = self.seq
        self.seq -= 1
        self.reads_left -= 1
        return seq

    def finish(self) -> None:
        """Nothing older is wanted."""
        self.seq = self.first_seq - 1

    def next_cursor(self) -> str | None:
        return str(self.seq + 1) if self.has_more() else None


def parse_cursor(cursor: str) -> int:
    """A stream sequence given back as a page cursor.

    Raises:
        ValueError: not a whole number from 1 (CURSOR_PATTERN, as documented).
    """
    seq = whole_number(cursor) if _CURSOR_RE.fullmatch(cursor) else None
    if seq is None:
        raise ValueError(f"invalid cursor {cursor!r}")
    return seq
