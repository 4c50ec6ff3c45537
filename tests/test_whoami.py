"""``GET /whoami``: any valid key learns its own name, permissions, target patterns and
``max_hosts`` (docs/api.md), which the web console uses to hide what the key may not do."""

from __future__ import annotations

import aiohttp

from controller.appkeys import KEYS_RELOADER
from controller.keys.store import PERMISSIONS, create_key
from tests.helpers import Controller, MakeController


async def test_a_key_without_permissions_learns_what_it_is(
    make_controller: MakeController,
) -> None:
    controller = await make_controller(keys={"viewer": ([], ["web*", "role:web"])})
    answer = await controller.request("GET", "/whoami", key=controller.extra_keys["viewer"])
    assert answer.status == 200, answer.body
    assert answer.body == {
        "name": "viewer",
        "permissions": [],
        "targets": ["web*", "role:web"],
        "max_hosts": None,
        "expires_at": None,
    }


async def test_whoami_names_max_hosts_and_every_permission_sorted(
    controller: Controller,
) -> None:
    key = create_key(
        controller.keys_file, name="ops", permissions=["node:read", "command:exec"],
        targets=[], max_hosts=3, expires_at=4_000_000_000.0,
    )  # fmt: skip
    assert controller.app[KEYS_RELOADER].reload()
    answer = await controller.request("GET", "/whoami", key=key)
    assert answer.body["permissions"] == ["command:exec", "node:read"]
    assert (answer.body["max_hosts"], answer.body["expires_at"]) == (3, 4_000_000_000.0)
    admin = await controller.request("GET", "/whoami")
    assert admin.body["permissions"] == sorted(PERMISSIONS)


async def test_whoami_without_a_valid_key_is_the_apis_401(controller: Controller) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(controller.url + "/whoami") as anonymous,
    ):
        assert anonymous.status == 401
        assert (await anonymous.json())["code"] == 401
    wrong = await controller.request("GET", "/whoami", key="nxk_wrong")
    assert wrong.status == 401
    assert wrong.body == {"error": "unauthorized", "details": "unknown API key", "code": 401}
