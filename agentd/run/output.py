"""Reading a process's output under a byte cap: keep the head and the tail, count the rest."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


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
        if not self.truncated:
            return (self._head + self._tail).decode(errors="replace")
        head = self._head.decode(errors="replace")
        omitted = self.total_bytes - len(self._head) - len(self._tail)
        marker = f"\n[nexec: {omitted} bytes omitted]\n"
        return head + marker + self._tail.decode(errors="replace")


class _CaptureProtocol(asyncio.Protocol):
    """Feeds every chunk straight into a :class:`CappedOutput`; nothing is buffered."""

    def __init__(
        self,
        sink: CappedOutput,
        closed: asyncio.Future[None],
        on_data: Callable[[bytes], None] | None,
    ) -> None:
        self._sink = sink
        self._closed = closed
        self._on_data = on_data

    def data_received(self, data: bytes) -> None:
        self._sink.feed(data)
        if self._on_data is not None:
            self._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


class OutputPipe:
    """A pipe for one output stream of a child: the child gets ``child_fd``, the agent
    reads the other end into :attr:`output`.

    The pipe is ours, not asyncio's subprocess transport's, so that waiting for
    the process never waits for a pipe that a background grandchild holds open,
    and so that reading can be given up with :meth:`close`.
    """

    def __init__(self, cap_bytes: int, on_data: Callable[[bytes], None] | None = None) -> None:
        self.output = CappedOutput(cap_bytes)
        self._on_data = on_data
        self._read_fd, self.child_fd = os.pipe()
        self._child_fd_open = True
        self._transport: asyncio.ReadTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the write end is closed everywhere (end of file) or on :meth:`close`."""

    async def start_reading(self) -> None:
        """Raises: OSError when the pipe cannot be registered with the event loop."""
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(self._read_fd, "rb", buffering=0)
        self._read_fd = -1  # owned by ``pipe`` from here on
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: _CaptureProtocol(self.output, self.closed, self._on_data), pipe
            )
        except OSError:
            pipe.close()
            self.closed.set_result(None)
            raise

    def close_child_end(self) -> None:
        """Close our copy of the child's end (after spawning), so end of file can come."""
        if self._child_fd_open:
            self._child_fd_open = False
            os.close(self.child_fd)

    def close(self) -> None:
        """Stop reading; output read so far stays in :attr:`output`. Safe to call twice."""
        self.close_child_end()
        if self._transport is not None:
            self._transport.close()
        elif self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1
            self.closed.set_result(None)
