"""``nexec.SyncClient``: the same methods as ``nexec.Client``, without ``await``.

It runs a :class:`nexec.Client` on a private event loop in its own thread, and each
method waits for that loop's answer. A thread rather than ``asyncio.run`` (or an
``asyncio.Runner``) per call, because: it works where the calling thread already runs an
event loop (a notebook, an async program calling a sync library), where ``asyncio.run``
refuses; the connections of one client are kept between calls (one aiohttp session, one
loop), and iterators (``jobs``, ``output``) can be consumed step by step by plain loops.
Close it (``with`` or :meth:`SyncClient.close`) to stop the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, Unpack, overload

from nexec._client import DEFAULT_TIMEOUT_S, DEFAULT_URL, Client
from nexec._events import Event
from nexec._options import CommandOptions
from nexec._retry import OnRetry, RetryPolicy
from schemas.api import (
    AuditList,
    CancelAllResponse,
    DryRunResponse,
    ExecResponse,
    FleetStatus,
    HealthResponse,
    JobList,
    JobSummary,
    JobView,
    NodeList,
)
from schemas.messages import AuditRecord

T = TypeVar("T")


async def _next(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


class _LoopThread:
    """An event loop running forever in a daemon thread, until :meth:`close`."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="nexec-sync-client", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result, run on the loop; cancelled there if the caller is
        interrupted (KeyboardInterrupt)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """The async iterator's items; it is closed when the caller stops early."""
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None and not self._loop.is_closed():
                self.run(aclose())

    def close(self, last: Coroutine[Any, Any, None]) -> None:
        """Run ``last`` (closing what runs on the loop), then stop the loop and the thread;
        once only."""
        if self._loop.is_closed():
            last.close()
            return
        self.run(last)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class SyncClient:
    """The synchronous twin of :class:`nexec.Client`: the same constructor, methods,
    results and exceptions; iterators are plain iterators. A context manager; ``on_retry``
    is called in the client's own thread."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str = "",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._client = Client(url, api_key, timeout_s=timeout_s, retry=retry, on_retry=on_retry)
        self._loop = _LoopThread()

    def __repr__(self) -> str:
        return f"nexec.SyncClient({self._client.url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the client's thread; safe to call twice."""
        self._loop.close(self._client.aclose())

    @overload
    def exec(
        self,
        target: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dry_run: Literal[False] = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse: ...

    @overload
    def exec(
        self,
        target: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dry_run: Literal[True],
        **options: Unpack[CommandOptions],
    ) -> DryRunResponse: ...

    def exec(
        self,
        target: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dry_run: bool = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse | DryRunResponse:
        """As :meth:`nexec.Client.exec`."""
        if dry_run:
            return self._loop.run(self._client.exec(target, command, args, dry_run=True, **options))
        return self._loop.run(self._client.exec(target, command, args, **options))

    @overload
    def shell(
        self,
        target: str,
        command_line: str,
        *,
        dry_run: Literal[False] = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse: ...

    @overload
    def shell(
        self,
        target: str,
        command_line: str,
        *,
        dry_run: Literal[True],
        **options: Unpack[CommandOptions],
    ) -> DryRunResponse: ...

    def shell(
        self,
        target: str,
        command_line: str,
        *,
        dry_run: bool = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse | DryRunResponse:
        """As :meth:`nexec.Client.shell`."""
        if dry_run:
            return self._loop.run(self._client.shell(target, command_line, dry_run=True, **options))
        return self._loop.run(self._client.shell(target, command_line, **options))

    def job(self, job_id: str) -> JobView:
        """As :meth:`nexec.Client.job`."""
        return self._loop.run(self._client.job(job_id))

    def job_page(self, *, limit: int | None = None, cursor: str | None = None) -> JobList:
        """As :meth:`nexec.Client.job_page`."""
        return self._loop.run(self._client.job_page(limit=limit, cursor=cursor))

    def jobs(self, *, page_size: int | None = None) -> Iterator[JobSummary]:
        """As :meth:`nexec.Client.jobs`."""
        return self._loop.iterate(self._client.jobs(page_size=page_size))

    def cancel(self, job_id: str) -> JobView:
        """As :meth:`nexec.Client.cancel`."""
        return self._loop.run(self._client.cancel(job_id))

    def delete_job(self, job_id: str) -> None:
        """As :meth:`nexec.Client.delete_job`."""
        self._loop.run(self._client.delete_job(job_id))

    def cancel_all(self) -> CancelAllResponse:
        """As :meth:`nexec.Client.cancel_all`."""
        return self._loop.run(self._client.cancel_all())

    def fleet(self) -> FleetStatus:
        """As :meth:`nexec.Client.fleet`."""
        return self._loop.run(self._client.fleet())

    def pause(self) -> FleetStatus:
        """As :meth:`nexec.Client.pause`."""
        return self._loop.run(self._client.pause())

    def resume(self) -> FleetStatus:
        """As :meth:`nexec.Client.resume`."""
        return self._loop.run(self._client.resume())

    def output(self, job_id: str, *, last_event_id: int = 0) -> Iterator[Event]:
        """As :meth:`nexec.Client.output`."""
        return self._loop.iterate(self._client.output(job_id, last_event_id=last_event_id))

    def nodes(self) -> NodeList:
        """As :meth:`nexec.Client.nodes`."""
        return self._loop.run(self._client.nodes())

    def node(self, target: str) -> NodeList:
        """As :meth:`nexec.Client.node`."""
        return self._loop.run(self._client.node(target))

    def audit_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        key_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> AuditList:
        """As :meth:`nexec.Client.audit_page`."""
        return self._loop.run(
            self._client.audit_page(
                limit=limit, cursor=cursor, key_name=key_name, since=since, until=until
            )
        )

    def audit(
        self,
        *,
        key_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page_size: int | None = None,
    ) -> Iterator[AuditRecord]:
        """As :meth:`nexec.Client.audit`."""
        return self._loop.iterate(
            self._client.audit(key_name=key_name, since=since, until=until, page_size=page_size)
        )

    def health(self) -> HealthResponse:
        """As :meth:`nexec.Client.health`."""
        return self._loop.run(self._client.health())
