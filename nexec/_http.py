"""The client's HTTP: one aiohttp session, the key as ``Authorization: Bearer``, the retry
rule applied, and aiohttp's errors translated to nexec's in one place (:func:`translated`).

Redirects are not followed (the API has none): a ``3xx`` is an ``APIError``, and the key
never goes to another address than the one the client was given.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

import aiohttp
from yarl import URL

from nexec._retry import OnRetry, Retrying, RetryPolicy, parse_retry_after
from nexec.errors import APIError, ConnectionFailed, TimedOut, api_error

USER_AGENT = "nexec-python"


class _Secret:
    """The API key: shown as ``'***'`` by repr() and str(), so never in a log or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


@contextmanager
def translated(method: str, url: URL) -> Iterator[None]:
    """aiohttp's and asyncio's errors as nexec's, for one request.

    Raises:
        TimedOut: no answer (or no more of it) within the timeout.
        ConnectionFailed: connecting failed, or the connection broke.
    """
    where = f"{method} {url.with_query(None)}"
    try:
        yield
    except TimeoutError as exc:  # aiohttp's ServerTimeoutError is one too
        raise TimedOut(f"{where}: no answer within the timeout") from exc
    except aiohttp.ClientError as exc:
        raise ConnectionFailed(f"{where}: {type(exc).__name__}: {exc}") from exc


class Http:
    """Requests to one controller with one key; owns its aiohttp session."""

    def __init__(
        self, url: str, api_key: str, *, retry: RetryPolicy, on_retry: OnRetry | None
    ) -> None:
        self.base = URL(url)
        self._key = _Secret(api_key)
        self.retry = retry
        self._on_retry = on_retry
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"Http({str(self.base)!r})"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._key.reveal()}",
            "User-Agent": USER_AGENT,
            **extra,
        }

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _url(self, path: URL) -> URL:
        """``path`` (with its query) under the base URL, a path prefix included."""
        return URL(str(self.base).rstrip("/") + str(path), encoded=True)

    async def request(
        self,
        method: str,
        path: URL,
        *,
        client_timeout: aiohttp.ClientTimeout,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool = True,
        accept: frozenset[int] = frozenset(),
    ) -> tuple[int, bytes]:
        """Send one request (again after a ``429``/``503`` when ``retry``, by the retry
        rule); the status and body of a 2xx answer, or of one whose status is in ``accept``.

        Raises:
            APIError: a subclass per status, for an error answer (after the retries).
            TimedOut, ConnectionFailed: no answer.
        """
        all_headers = self._headers(headers or {})
        if body is not None:
            all_headers["Content-Type"] = "application/json"
        url = self._url(path)
        retries = 0
        while True:
            response, content = await self._send(method, url, body, all_headers, client_timeout)
            if response.status < 300 or response.status in accept:
                return response.status, content
            error = _error(response, content)
            delay_s = self.retry.delay_s(retries, error) if retry else None
            if delay_s is None:
                raise error
            retries += 1
            await self._before_retry(Retrying(method, url.path, retries, error, delay_s))

    async def _send(
        self,
        method: str,
        url: URL,
        body: bytes | None,
        headers: Mapping[str, str],
        client_timeout: aiohttp.ClientTimeout,
    ) -> tuple[aiohttp.ClientResponse, bytes]:
        """One try, without following redirects: the answer and its whole body.

        Raises:
            TimedOut, ConnectionFailed: no answer (:func:`translated`).
        """
        with translated(method, url):
            async with self._open_session().request(
                method,
                url,
                data=body,
                headers=headers,
                timeout=client_timeout,
                allow_redirects=False,
            ) as response:
                return response, await response.read()

    async def _before_retry(self, notice: Retrying) -> None:
        if self._on_retry is not None:
            outcome = self._on_retry(notice)
            if inspect.isawaitable(outcome):
                await outcome
        await asyncio.sleep(notice.delay_s)

    @asynccontextmanager
    async def stream(
        self, path: URL, *, client_timeout: aiohttp.ClientTimeout, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A ``GET`` whose 2xx answer is read as it comes (the caller reads it inside
        ``translated``); retried like :meth:`request` until the answer starts.

        Raises:
            APIError, TimedOut, ConnectionFailed: as :meth:`request`.
        """
        url = self._url(path)
        retries = 0
        while True:
            with translated("GET", url):
                response = await self._open_session().get(
                    url,
                    headers=self._headers(headers),
                    timeout=client_timeout,
                    allow_redirects=False,
                )
            try:
                if response.status < 300:
                    yield response
                    return
                with translated("GET", url):
                    error = _error(response, await response.read())
            finally:
                response.release()
            delay_s = self.retry.delay_s(retries, error)
            if delay_s is None:
                raise error
            retries += 1
            await self._before_retry(Retrying("GET", url.path, retries, error, delay_s))


def _error(response: aiohttp.ClientResponse, content: bytes) -> APIError:
    retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
    return api_error(response.status, content, response.reason or "", retry_after_s=retry_after_s)
