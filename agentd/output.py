"""Reading a process's output under a byte cap: keep the head and the tail, count the rest."""

from __future__ import annotations

import asyncio

READ_CHUNK_BYTES = 64 * 1024


class CappedOutput:
    """The first and last bytes of a stream, never more than ``cap_bytes`` in memory.

    Half of the cap keeps the head, half the tail; ``total_bytes`` counts every
    byte fed, kept or not.
    """

    def __init__(self, cap_bytes: int) -> None:
        self._head_cap = cap_bytes // 2
        self._tail_cap = cap_bytes - self._head_cap
        self._head = bytearray()
        self._tail = bytearray()
        self.total_bytes = 0

    @property
    def truncated(self) -> bool:
        return self.total_bytes > len(self._head) + len(self._tail)

    def feed(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if not chunk or self._tail_cap == 0:
            return
        self._tail += chunk[-self._tail_cap :]
        overflow = len(self._tail) - self._tail_cap
        if overflow > 0:
            del self._tail[:overflow]

    def text(self) -> str:
        """The kept bytes decoded as UTF-8 with replacement.

        When bytes were dropped, a marker line between head and tail says how many.
        """
        head = self._head.decode(errors="replace")
        if not self.truncated:
            return head + self._tail.decode(errors="replace")
        omitted = self.total_bytes - len(self._head) - len(self._tail)
        marker = f"\n[nexec: {omitted} bytes omitted]\n"
        return head + marker + self._tail.decode(errors="replace")


async def read_capped(stream: asyncio.StreamReader, sink: CappedOutput) -> None:
    """Feed ``stream`` into ``sink`` until end of file."""
    while chunk := await stream.read(READ_CHUNK_BYTES):
        sink.feed(chunk)
