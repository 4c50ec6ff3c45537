"""Live output: a running job's output recorded as chunks while it is produced.

Only the first ``cap_bytes`` of each stream are sent live (the final result
keeps head and tail); chunks are published in order by one sender task, and
:meth:`LiveOutput.close` waits until all are out, so a job's chunks are
recorded before its result.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Awaitable, Callable

from schemas.messages import OUTPUT_STREAMS, OutputChunk

Publish = Callable[[OutputChunk], Awaitable[None]]


class LiveOutput:
    def __init__(self, job_id: str, hostname: str, cap_bytes: int, publish: Publish) -> None:
        self._job_id = job_id
        self._hostname = hostname
        self._cap_bytes = cap_bytes
        self._publish = publish
        self._sent = dict.fromkeys(OUTPUT_STREAMS, 0)
        self._decoders = {
            stream: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for stream in OUTPUT_STREAMS
        }
        self._queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    def feeder(self, stream: str) -> Callable[[bytes], None]:
        """A callback taking the raw bytes of ``stream`` as they are read."""
        return lambda data: self._feed(stream, data)

    def _feed(self, stream: str, data: bytes) -> None:
        room = self._cap_bytes - self._sent[stream]
        if room <= 0:
            return
        data = data[:room]
        offset = self._sent[stream]
        self._sent[stream] += len(data)
        text = self._decoders[stream].decode(data, final=self._sent[stream] >= self._cap_bytes)
        if not text:
            return
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all())
        self._queue.put_nowait(
            OutputChunk(
                job_id=self._job_id,
                hostname=self._hostname,
                stream=stream,
                offset=offset,
                data=text,
            )
        )

    async def _send_all(self) -> None:
        while (chunk := await self._queue.get()) is not None:
            await self._publish(chunk)

    async def close(self) -> None:
        """Send what is left and wait until every chunk is published."""
        if self._sender is None:
            return
        self._queue.put_nowait(None)
        await self._sender
