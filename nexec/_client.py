"""``nexec.Client``: the HTTP API of a nexec controller as typed async methods."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, Unpack, overload
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from nexec._events import KEEPALIVE_S, Event, follow
from nexec._http import Http
from nexec._options import CommandOptions, command_request, exec_fields, page_query
from nexec._retry import OnRetry, RetryPolicy
from nexec.errors import InvalidResponse
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

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 30.0
_UNHEALTHY = frozenset({503})
"""``GET /healthz`` answers 503 with a HealthResponse, not an error body."""


def _path(*segments: str) -> URL:
    """A path of quoted segments (a target or a job id is one segment, ``/`` included)."""
    return URL("/" + "/".join(quote(segment, safe=":,@") for segment in segments), encoded=True)


def _decode(kind: type[T], body: bytes) -> T:
    """Raises: InvalidResponse: ``body`` is not a ``kind``."""
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.DecodeError as exc:
        raise InvalidResponse(f"the answer is not a valid {kind.__name__}: {exc}") from exc


class Client:
    """A client of one nexec controller, with one API key: an async context manager.

    ``timeout_s`` bounds connecting, and waiting for an answer beyond the time the
    request itself gives the controller (an exec's command ``timeout`` or its ``wait``).
    ``retry`` is the retry rule of 429 and 503 answers (see ``nexec.RetryPolicy``);
    ``on_retry`` is called (or awaited) before each retry's wait. The key is sent only as
    ``Authorization: Bearer`` and is never shown by repr().

    Every method raises, besides what it names: ``Unauthorized`` (401), ``Forbidden``
    (403), ``TooManyRequests`` (429), ``InternalServerError`` (500),
    ``ServiceUnavailable`` (503), ``ConnectionFailed``, ``TimedOut``, ``InvalidResponse``.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str = "",
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._http = Http(url, api_key, retry=retry or RetryPolicy(), on_retry=on_retry)
        self.timeout_s = timeout_s

    @property
    def url(self) -> str:
        return str(self._http.base)

    def __repr__(self) -> str:
        return f"nexec.Client({self.url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections; safe to call twice."""
        await self._http.close()

    def _timeout(self, server_wait_s: float = 0.0) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s + server_wait_s
        )

    async def _get(self, kind: type[T], path: URL, query: dict[str, str] | None = None) -> T:
        _, body = await self._http.request(
            "GET", path.with_query(query or {}), client_timeout=self._timeout()
        )
        return _decode(kind, body)

    @overload
    async def exec(
        self,
        target: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dry_run: Literal[False] = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse: ...

    @overload
    async def exec(
        self,
        target: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dry_run: Literal[True],
        **options: Unpack[CommandOptions],
    ) -> DryRunResponse: ...

    async def exec(
        self,
        target: str,
        command: str,
        args: Sequence[str] = (),
        *,
        dry_run: bool = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse | DryRunResponse:
        """Run ``command`` with ``args`` (no shell) on ``target``: a hostname, ``_any``,
        ``_all`` or a label selector (``role:web,env:prod``); see ``CommandOptions``.
        With ``dry_run=True`` nothing runs: every check is made and the answer is the
        ``DryRunResponse`` (the hosts it would run on, their count, the batch size).

        Raises:
            BadRequest, NotFound (no live agent matches), Conflict (idempotency key
            reused for another request), PayloadTooLarge, ServiceUnavailable (also: the
            fleet is paused), TypeError (unknown option).
        """
        fields = exec_fields(command, args)
        if dry_run:
            return await self._dry_run("exec", target, fields, options)
        return await self._command("exec", target, fields, options)

    @overload
    async def shell(
        self,
        target: str,
        command_line: str,
        *,
        dry_run: Literal[False] = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse: ...

    @overload
    async def shell(
        self,
        target: str,
        command_line: str,
        *,
        dry_run: Literal[True],
        **options: Unpack[CommandOptions],
    ) -> DryRunResponse: ...

    async def shell(
        self,
        target: str,
        command_line: str,
        *,
        dry_run: bool = False,
        **options: Unpack[CommandOptions],
    ) -> ExecResponse | DryRunResponse:
        """Run ``command_line`` with ``/bin/sh -c`` on ``target``; as :meth:`exec`.

        Raises:
            BadRequest, NotFound, Conflict, PayloadTooLarge, ServiceUnavailable,
            TypeError (unknown option).
        """
        fields = {"command": command_line}
        if dry_run:
            return await self._dry_run("shell", target, fields, options)
        return await self._command("shell", target, fields, options)

    async def _command(
        self, kind: str, target: str, fields: dict[str, Any], options: CommandOptions
    ) -> ExecResponse:
        return _decode(ExecResponse, await self._post_command(kind, target, fields, options))

    async def _dry_run(
        self, kind: str, target: str, fields: dict[str, Any], options: CommandOptions
    ) -> DryRunResponse:
        body = await self._post_command(kind, target, fields, options, dry_run=True)
        return _decode(DryRunResponse, body)

    async def _post_command(
        self,
        kind: str,
        target: str,
        fields: dict[str, Any],
        options: CommandOptions,
        *,
        dry_run: bool = False,
    ) -> bytes:
        request = command_request(fields, options, dry_run=dry_run)
        _, body = await self._http.request(
            "POST",
            _path("node", target, "command", kind).with_query(request.query),
            client_timeout=self._timeout(request.server_wait_s),
            body=request.body,
            headers=request.headers,
            retry=request.retry,
        )
        return body

    async def job(self, job_id: str) -> JobView:
        """The job's request, state and every host's result.

        Raises:
            NotFound: no such job (deleted, expired, or outside the key's scope).
        """
        return await self._get(JobView, _path("job", job_id))

    async def job_page(self, *, limit: int | None = None, cursor: str | None = None) -> JobList:
        """One page of ``GET /job`` (newest first; may be short: follow ``next_cursor``).

        Raises:
            BadRequest: a bad limit or cursor.
        """
        return await self._get(JobList, _path("job"), page_query(limit=limit, cursor=cursor))

    async def jobs(self, *, page_size: int | None = None) -> AsyncIterator[JobSummary]:
        """Every job the key may see, newest first, page after page.

        Raises:
            BadRequest: a bad page size.
        """
        cursor: str | None = None
        while True:
            page = await self.job_page(limit=page_size, cursor=cursor)
            for summary in page.jobs:
                yield summary
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: str) -> JobView:
        """Stop the job on every agent still running it; the job as recorded now.

        Raises:
            NotFound: no such job. Conflict: the job has already ended.
        """
        _, body = await self._http.request(
            "POST", _path("job", job_id, "cancel"), client_timeout=self._timeout()
        )
        return _decode(JobView, body)

    async def delete_job(self, job_id: str) -> None:
        """Remove the job's record, results and output.

        Raises:
            NotFound: no such job.
        """
        await self._http.request("DELETE", _path("job", job_id), client_timeout=self._timeout())

    async def cancel_all(self) -> CancelAllResponse:
        """Cancel every running job (and rollout not ended) the key may see
        (``POST /job/cancel-all``, permission ``fleet:admin``). ``complete`` is false when
        the controller stopped at its bound of job records read: call it again.

        Raises:
            Forbidden: the key lacks ``fleet:admin``.
        """
        _, body = await self._http.request(
            "POST", _path("job", "cancel-all"), client_timeout=self._timeout()
        )
        return _decode(CancelAllResponse, body)

    async def fleet(self) -> FleetStatus:
        """Whether the fleet is paused, and by whom (``GET /fleet``)."""
        return await self._get(FleetStatus, _path("fleet"))

    async def pause(self) -> FleetStatus:
        """Pause the fleet: every controller refuses exec and shell with 503, running
        rollouts start no further host (``POST /fleet/pause``); pausing a paused fleet
        changes nothing.

        Raises:
            Forbidden: the key lacks ``fleet:admin``, or has target patterns.
        """
        return await self._post_fleet("pause")

    async def resume(self) -> FleetStatus:
        """Take exec and shell again, on every controller (``POST /fleet/resume``).

        Raises:
            Forbidden: the key lacks ``fleet:admin``, or has target patterns.
        """
        return await self._post_fleet("resume")

    async def _post_fleet(self, action: str) -> FleetStatus:
        _, body = await self._http.request(
            "POST", _path("fleet", action), client_timeout=self._timeout()
        )
        return _decode(FleetStatus, body)

    def output(self, job_id: str, *, last_event_id: int = 0) -> AsyncIterator[Event]:
        """The job's live events (output chunks, each host's result, then ``end``), from
        the start or after ``last_event_id``; a dropped connection is resumed with
        ``Last-Event-ID``.

        Raises:
            NotFound: no such job. BadRequest: a bad ``last_event_id``.
        """
        return follow(
            self._http,
            _path("job", job_id, "output"),
            last_event_id=last_event_id,
            client_timeout=self._timeout(KEEPALIVE_S),
        )

    async def nodes(self) -> NodeList:
        """Every live agent the key may reach, sorted by hostname."""
        return await self._get(NodeList, _path("node"))

    async def node(self, target: str) -> NodeList:
        """The live agents ``target`` addresses (a hostname, ``_all``, ``_any``, labels).

        Raises:
            BadRequest: bad target syntax. NotFound: a hostname that is not live.
        """
        return await self._get(NodeList, _path("node", target))

    async def audit_page(
        self,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        key_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> AuditList:
        """One page of the audit trail, newest first (may be short: follow ``next_cursor``).

        Raises:
            BadRequest: a bad parameter.
        """
        query = page_query(limit=limit, cursor=cursor, key=key_name, since=since, until=until)
        return await self._get(AuditList, _path("audit"), query)

    async def audit(
        self,
        *,
        key_name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[AuditRecord]:
        """Every audit record the key may see (``key_name``, ``since`` and ``until`` in
        Unix seconds narrow it), newest first, page after page.

        Raises:
            BadRequest: a bad parameter.
        """
        cursor: str | None = None
        while True:
            page = await self.audit_page(
                limit=page_size, cursor=cursor, key_name=key_name, since=since, until=until
            )
            for record in page.records:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def health(self) -> HealthResponse:
        """The controller's readiness, ``200`` or ``503`` alike: ``status`` is ``ok``, or
        the first of the ``reasons`` requests cannot succeed now. Never retried.

        Raises:
            ConnectionFailed, TimedOut, InvalidResponse; APIError for another status.
        """
        _, body = await self._http.request(
            "GET", _path("healthz"), client_timeout=self._timeout(), retry=False, accept=_UNHEALTHY
        )
        return _decode(HealthResponse, body)
