"""A loopback TCP proxy a test can cut, to drop a client's connection mid-stream for real.

``LoopbackProxy(upstream_port)`` listens on 127.0.0.1 and pipes every connection to the
upstream port. :meth:`drop` closes every connection open now, both ways, as a broken
network path would; the listener stays, so the client can reconnect. With
``upstream_port=None`` it is a black hole: it accepts and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib


class LoopbackProxy:
    def __init__(self, upstream_port: int | None) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self.connections = 0
        """Connections accepted so far."""

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> LoopbackProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.drop()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def drop(self) -> None:
        """Close every connection open now (client and upstream sides)."""
        for writer in self._open:
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.add(writer)
        if self._upstream_port is None:
            return  # a black hole: the connection stays open and unanswered
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._open.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()
