"""Routes declared once (controller.http.operations): the router, the permission check, the
public endpoints, the 429s and the OpenAPI document all follow the declarations."""

from __future__ import annotations

import json

import aiohttp
import pytest

from controller.app import API
from controller.appkeys import OPERATIONS
from controller.http.openapi import openapi_document
from controller.http.operations import Operation, Operations
from controller.keys.store import PERMISSIONS
from schemas.jsonschema import HTTP_TYPES
from tests.helpers import Controller, MakeController

PATH_VALUES = {
    "{hostname}": "_all",
    "{job_id}": "00000000-0000-4000-8000-000000000000",
    "{name}": "app.js",
}


def concrete(path: str) -> str:
    for placeholder, value in PATH_VALUES.items():
        path = path.replace(placeholder, value)
    return path


def key_name(permission: str) -> str:
    return "without-" + permission.replace(":", "-")


async def test_the_document_has_exactly_the_routes_of_the_router(controller: Controller) -> None:
    """Every route is documented with its method and path, and every documented
    operation is routed; HEAD is routed only as the companion of a GET."""
    async with controller.session.get(controller.url + "/openapi.json") as response:
        document = await response.json()
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item}  # fmt: skip
    routed = {
        (route.method, route.resource.canonical)
        for route in controller.app.router.routes()
        if route.resource is not None
    }
    heads = {(method, path) for method, path in routed if method == "HEAD"}
    assert routed - heads == documented
    assert heads == {("HEAD", path) for method, path in documented if method == "GET"}
    assert {(op.method, op.path) for op in controller.app[OPERATIONS]} == documented


async def test_every_keyed_route_enforces_its_declared_permission(
    make_controller: MakeController,
) -> None:
    """For each route in the router: without a key 401 (public ones answer); with a key
    holding every permission but the declared one, 403 naming it, before the handler."""
    keys = {key_name(p): (sorted(PERMISSIONS - {p}), []) for p in PERMISSIONS}
    controller = await make_controller(keys=keys)
    operations = controller.app[OPERATIONS]
    declared = {(op.method, op.path): op for op in operations}
    checked = 0
    for route in controller.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        operation = declared[(route.method, route.resource.canonical)]
        path = concrete(operation.path)
        async with controller.session.request(operation.method, controller.url + path) as anon:
            if operation.public:
                assert anon.status not in (401, 403), operation.label
                continue
            assert anon.status == 401, operation.label
        if operation.any_key:  # a key without the one permission others need is enough
            allowed = await controller.request(
                operation.method, path, key=controller.extra_keys[key_name("node:read")]
            )
            assert allowed.status == 200, (operation.label, allowed.body)
            checked += 1
            continue
        assert operation.permission is not None
        refused = await controller.request(
            operation.method, path, key=controller.extra_keys[key_name(operation.permission)]
        )
        assert refused.status == 403, (operation.label, refused.body)
        assert refused.body["details"] == (
            f"key {key_name(operation.permission)!r} lacks the permission {operation.permission!r}"
        ), operation.label
        checked += 1
    assert checked == sum(1 for op in operations if not op.public) > 0


async def test_public_operations_are_exactly_the_declared_ones(controller: Controller) -> None:
    public = {op.path for op in controller.app[OPERATIONS] if op.public}
    assert public == {"/healthz", "/livez", "/metrics", "/openapi.json", "/ui/", "/ui/{name}"}
    async with aiohttp.ClientSession() as session:
        for path in sorted(public):
            async with session.get(controller.url + concrete(path)) as response:
                assert response.status == 200, path


def test_every_keyed_operation_declares_its_429_and_the_document_says_so() -> None:
    document = json.loads(openapi_document(API))
    keyed = [op for op in API if not op.public]
    assert keyed
    for operation in keyed:
        keyed_errors = {401, 429, 500, 503} | (set() if operation.any_key else {403})
        assert keyed_errors <= set(operation.error_statuses), operation.label
        responses = document["paths"][operation.path][operation.method.lower()]["responses"]
        assert "Retry-After" in responses["429"]["headers"], operation.label
        if operation.request_body is not None:
            assert {400, 408, 413, 415} <= set(operation.error_statuses), operation.label
    for operation in API:
        if operation.public:
            assert 429 not in operation.error_statuses, operation.label


def test_every_declared_body_is_exported_as_json_schema() -> None:
    """The document's components (and schemas/jsonschema.py's export) are HTTP_TYPES."""
    for operation in API:
        others = tuple(body for _, body, _ in operation.other_ok)
        for model in (operation.request_body, operation.ok_body, operation.error_body, *others):
            assert model is None or model in HTTP_TYPES, (operation.label, model)


async def handler(request: object) -> object:
    raise AssertionError("never called")


@pytest.mark.parametrize(
    "declaration",
    [
        {},  # neither permission nor public
        {"permission": "job:read", "public": True},
        {"permission": "job:read", "any_key": True},
        {"public": True, "any_key": True},
        {"permission": "job:write"},
        {"permission": "job:read", "method": "PUT"},
    ],
)
def test_a_bad_declaration_is_refused(declaration: dict[str, object]) -> None:
    fields = {"method": "GET", "path": "/x", "summary": "x", **declaration}
    with pytest.raises(ValueError):
        Operation(handler=handler, **fields)  # type: ignore[arg-type]


def test_a_route_declared_twice_is_refused() -> None:
    table = Operations()
    table.route("GET", "/x", summary="x", public=True)(handler)
    with pytest.raises(ValueError, match="declared twice"):
        table.route("GET", "/x", summary="y", permission="job:read")(handler)
    with pytest.raises(ValueError, match="declared twice"):
        Operations(table, table)
