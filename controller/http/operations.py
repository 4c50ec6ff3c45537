"""Every HTTP operation declared once, next to its handler.

An :class:`Operation` says what one method and path is: its handler, the permission
a key needs (or that it is public), its request and response types, its parameters
and every error status it can answer. Each route module fills an
:class:`Operations` table with the :meth:`Operations.route` decorator; the
application joins the tables, and from that one list come

- the router (:meth:`Operations.add_to`),
- the permission check and the public endpoints (``controller.http.middleware.auth_middleware``
  reads the matched route's declaration: a handler cannot forget its permission),
- the audited operations (``controller.http.middleware.audit_middleware``),
- the paths no rate limit, connection cap or drain refuses (:attr:`Operations.unlimited_paths`),
- the OpenAPI document (``controller.http.openapi``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from controller.keys.store import PERMISSIONS
from schemas.api import ErrorBody

KEYED_ERRORS = (401, 403, 429, 500, 503)
"""What every operation behind an API key can answer: the middleware's statuses (no key,
the permission or target refused, over the rate, unexpected, NATS down or draining)."""
UNLIMITED_KEYED_ERRORS = (401, 403, 500, 503)
"""The same for a keyed operation no rate limit refuses (no 429)."""
ANY_KEY_ERRORS = (401, 429, 500, 503)
"""The same for an operation any valid key may call (no permission, so no 403)."""
BODY_ERRORS = (400, 408, 413, 415)
"""What reading a JSON body can answer (controller.http.body.read_json_body)."""

H = TypeVar("H", bound=Handler)


def parameter(where: str, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI parameter (``where``: path, query or header); a path one is required."""
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One HTTP operation: everything the router, the middleware and the OpenAPI
    document need to know about it.

    Raises (on construction):
        ValueError: not exactly one of ``permission``, ``public`` and ``any_key``, an
            unknown permission, or a method other than GET, POST and DELETE.
    """

    method: str
    """Upper case: GET (which also answers HEAD), POST or DELETE."""
    path: str
    """The aiohttp path pattern, which is also the OpenAPI path (``/job/{job_id}``)."""
    handler: Handler
    summary: str
    permission: str | None = None
    """The permission a key needs; enforced by the auth middleware before the handler."""
    public: bool = False
    """No key needed (and none checked)."""
    any_key: bool = False
    """Any valid key, whatever its permissions (``GET /whoami``)."""
    ok_status: int = 200
    ok_body: type[msgspec.Struct] | None = None
    ok_content: dict[str, Any] | None = None
    """The success's media types when its body is not one JSON model."""
    other_ok: tuple[tuple[int, type[msgspec.Struct], str], ...] = ()
    """Other success answers, each ``(status, body, description)`` (the dry run's 200)."""
    request_body: type[msgspec.Struct] | None = None
    """A JSON body of this type (which brings :data:`BODY_ERRORS`)."""
    parameters: tuple[dict[str, Any], ...] = ()
    errors: tuple[int, ...] = ()
    """The operation's own error statuses (see :attr:`error_statuses` for all)."""
    error_body: type[msgspec.Struct] = ErrorBody
    audited: bool = False
    """Audited whatever its status (every 401 and 403 is audited anyway)."""
    unlimited: bool = False
    """Never refused by the rate limit, the connection cap or a drain."""

    def __post_init__(self) -> None:
        if [self.permission is not None, self.public, self.any_key].count(True) != 1:
            raise ValueError(f"{self.label}: declare exactly one of permission, public and any_key")
        if self.permission is not None and self.permission not in PERMISSIONS:
            raise ValueError(f"{self.label}: unknown permission {self.permission!r}")
        if self.method not in ("GET", "POST", "DELETE"):
            raise ValueError(f"{self.label}: unsupported method")

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def error_statuses(self) -> tuple[int, ...]:
        """Every error status the operation can answer, sorted: its own, the body's,
        and the middleware's when it needs a key."""
        statuses = set(self.errors)
        if self.request_body is not None:
            statuses.update(BODY_ERRORS)
        if self.any_key:
            statuses.update(ANY_KEY_ERRORS)
        elif not self.public:
            statuses.update(UNLIMITED_KEYED_ERRORS if self.unlimited else KEYED_ERRORS)
        return tuple(sorted(statuses))


class Operations:
    """A table of operations: filled by :meth:`route` next to each handler, or joined
    from other tables (``Operations(table_a, table_b)``)."""

    def __init__(self, *tables: Iterable[Operation]) -> None:
        """Raises: ValueError when two operations have the same method and path."""
        self._by_route: dict[tuple[str, str], Operation] = {}
        self._unlimited_paths: set[str] = set()
        for table in tables:
            for operation in table:
                self.add(operation)

    def add(self, operation: Operation) -> None:
        """Raises: ValueError when the method and path are declared already."""
        key = (operation.method, operation.path)
        if key in self._by_route:
            raise ValueError(f"{operation.label} is declared twice")
        self._by_route[key] = operation
        if operation.unlimited:
            self._unlimited_paths.add(operation.path)

    def route(self, method: str, path: str, **declaration: Any) -> Callable[[H], H]:
        """Declare the decorated handler as ``method path`` (the keywords are
        :class:`Operation`'s). Raises: ValueError (see :class:`Operation`, :meth:`add`)."""

        def register(handler: H) -> H:
            self.add(Operation(method=method, path=path, handler=handler, **declaration))
            return handler

        return register

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._by_route.values())

    def __len__(self) -> int:
        return len(self._by_route)

    @property
    def unlimited_paths(self) -> Set[str]:
        """The paths of the operations declared ``unlimited``."""
        return self._unlimited_paths

    def add_to(self, app: web.Application) -> None:
        """Add every operation to the app's router (a GET answers HEAD too)."""
        app.add_routes(web.route(op.method, op.path, op.handler) for op in self)

    def of(self, request: web.Request) -> Operation | None:
        """The declaration of the route the request matched; None when it matched none
        (aiohttp answers 404 or 405).

        Raises:
            LookupError: the request matched a route that has no declaration here.
        """
        if request.match_info.http_exception is not None:
            return None
        route = request.match_info.route
        method = "GET" if route.method == "HEAD" else route.method
        canonical = route.resource.canonical if route.resource is not None else request.path
        operation = self._by_route.get((method, canonical))
        if operation is None:
            raise LookupError(f"no declaration for the route {method} {canonical}")
        return operation
