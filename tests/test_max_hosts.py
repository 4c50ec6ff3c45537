"""A key's blast radius (docs/security.md, "Blast radius"): a key with ``max_hosts``
never has more than that many hosts running its commands at once, across its
requests and controllers. Real NATS, real controllers and agents; each run appends
``start <tag>-<host>`` and ``end <tag>-<host>`` to a file, and the tests assert on
those lines (overlaps), never on timing."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
import pytest
from nats.aio.client import Client

from agentd.config import DEFAULT_BASE_ENV
from controller.appkeys import KEYS
from controller.jobs.host_slots import HostSlotsStore
from controller.keys.store import KeysFile, KeysFileError, create_key, read_keys_file
from nexec.cli import main as nexec_main
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from schemas.subjects import Subjects
from tests.helpers import (
    STARTUP_TIMEOUT_S,
    Controller,
    Fifo,
    LiveAgent,
    MakeController,
    NatsServer,
)
from tests.test_rollout import HOSTS, POOL, most_at_once

MAX_HOSTS = 2
SLOTS_RETRY_S = 0.1
VICTIM_TIMEOUT_S = 6
VICTIM_MARGIN_S = 0.5
"""The killed controller's job: its hosts' leases last the sum."""
PERMS = ["command:exec", "command:shell", "job:read"]


def limited_key(keys_file: Path, *controllers: Controller) -> str:
    """A key ``ops`` with ``max_hosts`` 2, accepted by every one of ``controllers``."""
    key = create_key(keys_file, name="ops", permissions=PERMS, targets=[], max_hosts=MAX_HOSTS)
    for controller in controllers:  # in its keys file too, so a reload keeps it
        stored = read_keys_file(controller.keys_file).keys + read_keys_file(keys_file).keys
        controller.keys_file.write_bytes(msgspec.json.encode(KeysFile(keys=stored)))
        controller.app[KEYS].replace(stored)
    return key


async def join_fleet(live_agent: LiveAgent, *controllers: Controller) -> None:
    """Six agents r1..r6 labelled pool=roll, each with its name in ``$NEXEC_HOST``."""
    for host in HOSTS:
        await live_agent(
            controllers[0], host, labels={"pool": "roll"}, allow_shell=True,
            base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host},
        )  # fmt: skip
    for controller in controllers[1:]:
        await controller.wait_for_agents(*HOSTS)


def tagged(log: Path, tag: str, body: str = "sleep 0.2") -> str:
    """A command line that logs ``start <tag>-<host>`` and ``end <tag>-<host>``."""
    name = f"{tag}-$NEXEC_HOST"
    return f'echo "start {name}" >> {log}; {body}; echo "end {name}" >> {log}'


def run_lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def shell(
    controller: Controller, key: str, body: dict[str, Any], target: str = POOL, query: str = ""
) -> Any:
    path = f"/node/{target}/command/shell{query}"
    return await controller.request("POST", path, json=body, key=key)


async def test_more_hosts_than_max_hosts_is_refused_naming_the_way_out(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await join_fleet(live_agent, controller)
    key = limited_key(tmp_path / "keys.json", controller)
    log = tmp_path / "log"
    plain = {"command": tagged(log, "a")}
    too_wide = {"command": tagged(log, "a"), "rollout": {"batch_size": 3}}
    for body in (plain, too_wide):
        for query in ("", "?dry_run=true"):
            response = await shell(controller, key, body, query=query)
            assert response.status == 403, response.body
            assert "max_hosts 2" in response.body["details"], response.body
            assert "use a rollout with batch_size <= 2" in response.body["details"]
    fifty = {"command": tagged(log, "a"), "rollout": {"batch_size": "50%"}}  # 3 of 6
    assert (await shell(controller, key, fifty)).status == 403
    assert not log.exists()  # nothing ran

    dry = await shell(controller, key, {"command": "true", "rollout": {"batch_size": 2}},
                      query="?dry_run=true")  # fmt: skip
    assert dry.status == 200 and dry.body["batch_size"] == 2, dry.body
    two_hosts = await shell(controller, key, {"command": tagged(log, "b")}, target="r1")
    assert two_hosts.status == 202, two_hosts.body  # one host: within the limit


async def test_two_rollouts_of_one_key_on_two_controllers_never_exceed_max_hosts(
    make_controller: MakeController, live_agent: LiveAgent, tmp_path: Path
) -> None:
    first = await make_controller(host_slots_retry_s=SLOTS_RETRY_S)
    second = await make_controller(host_slots_retry_s=SLOTS_RETRY_S)
    await join_fleet(live_agent, first, second)
    key = limited_key(tmp_path / "keys.json", first, second)
    log = tmp_path / "log"

    def body(tag: str) -> dict[str, Any]:
        return {"command": tagged(log, tag), "rollout": {"batch_size": MAX_HOSTS}}

    answers = await asyncio.gather(shell(first, key, body("a")), shell(second, key, body("b")))
    for answer in answers:
        assert answer.status == 202, answer.body
        assert [r["status"] for r in answer.body["results"]] == ["completed"] * 6, answer.body
    lines = run_lines(log)
    runs = Counter(line.split()[1] for line in lines if line.startswith("start "))
    assert runs == Counter(f"{tag}-{host}" for tag in "ab" for host in HOSTS)
    assert most_at_once(lines) <= MAX_HOSTS, lines

    plain = await shell(second, key, {"command": tagged(log, "c")}, target="r1")
    assert plain.status == 202 and plain.body["results"][0]["status"] == "completed"


async def test_slots_are_given_back_when_a_plain_request_ends(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    for host in ("r1", "r2"):
        await live_agent(controller, host, labels={"pair": "yes"}, allow_shell=True,
                         base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host})  # fmt: skip
    key = limited_key(tmp_path / "keys.json", controller)
    log = tmp_path / "log"
    for tag in ("a", "b", "c"):  # each takes both slots: runs only if the last gave them back
        answer = await shell(controller, key, {"command": tagged(log, tag)}, target="pair:yes")
        assert answer.status == 202, answer.body
        assert [r["status"] for r in answer.body["results"]] == ["completed"] * 2


def start_controller(nats_server: NatsServer, keys_file: Path) -> tuple[ManagedProcess, int]:
    """A controller process (SIGKILL-able) that sees r1 and r2; it and its HTTP port."""
    process = ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_server.url,
         "--listen", "127.0.0.1:0", "--keys-file", str(keys_file),
         "--delivery-margin", str(VICTIM_MARGIN_S)],
        name="controller",
    )  # fmt: skip
    ready = process.wait_for_line(CONTROLLER_READY_RE, STARTUP_TIMEOUT_S)
    for host in ("r1", "r2"):
        process.wait_for_line(re.compile(f"agent joined: {host}"), STARTUP_TIMEOUT_S)
    return process, int(ready["port"])


async def test_a_killed_controller_s_slots_come_free_at_their_deadlines(
    nats_server: NatsServer,
    make_controller: MakeController,
    live_agent: LiveAgent,
    started: Fifo,
    tmp_path: Path,
) -> None:
    """The killed controller held both slots for a job whose hosts hang until their
    timeout: the survivor refuses a plain request (429), and a rollout waits and runs
    once those leases' deadlines have passed."""
    survivor = await make_controller(host_slots_retry_s=SLOTS_RETRY_S, delivery_margin_s=0.5)
    for host in ("r1", "r2"):
        await live_agent(survivor, host, labels={"pair": "yes"}, allow_shell=True,
                         base_env={**DEFAULT_BASE_ENV, "NEXEC_HOST": host})  # fmt: skip
    keys_file = tmp_path / "keys.json"
    key = limited_key(keys_file, survivor)
    hang = f'echo "$NEXEC_HOST" > {started.path}; exec sleep 60'
    # Its hosts' leases last 6.5 s (timeout and margin): long enough that the 429 below
    # (a few hundred ms after the request, on a slow machine) never meets a slot already
    # come free; the rollout then waits out the rest.
    victim, port = await asyncio.to_thread(start_controller, nats_server, keys_file)
    try:
        url = f"http://127.0.0.1:{port}/node/pair:yes/command/shell?wait=false"
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session,
            session.post(url, json={"command": hang, "timeout": VICTIM_TIMEOUT_S}) as response,
        ):
            assert response.status == 202, await response.text()
        assert sorted(await started.lines(2)) == ["r1", "r2"]
        victim.popen.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.popen.wait, STARTUP_TIMEOUT_S)
    finally:
        await asyncio.to_thread(victim.stop)

    log = tmp_path / "log"
    busy = await shell(survivor, key, {"command": tagged(log, "a")}, target="r1")
    assert busy.status == 429, busy.body
    assert "max_hosts 2" in busy.body["details"]
    rollout = {"command": tagged(log, "b"), "rollout": {"batch_size": MAX_HOSTS}}
    answer = await shell(survivor, key, rollout, target="pair:yes")
    assert answer.status == 202, answer.body
    assert [r["status"] for r in answer.body["results"]] == ["completed"] * 2, [
        r["error"] for r in answer.body["results"]
    ]


def test_keys_create_stores_and_lists_max_hosts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.json"
    argv = ["keys", "create", "--keys-file", str(keys_file), "--name", "ops"]
    assert nexec_main([*argv, "--perm", "command:exec", "--max-hosts", "3"]) == 0
    capsys.readouterr()
    [entry] = json.loads(keys_file.read_text())["keys"]
    assert entry["max_hosts"] == 3
    assert "sha256" in entry and "max_hosts" not in json.dumps(entry["permissions"])
    assert nexec_main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    assert capsys.readouterr().out == "ops\tcommand:exec\t*\tnever expires\tmax_hosts 3\n"
    with pytest.raises(KeysFileError, match="max_hosts must be 1"):
        create_key(keys_file, name="zero", permissions=[], targets=[], max_hosts=0)
    entry["max_hosts"] = -1
    keys_file.write_text(json.dumps({"keys": [entry]}))
    with pytest.raises(KeysFileError, match="invalid max_hosts"):
        read_keys_file(keys_file)


async def test_of_many_controllers_taking_the_last_slot_at_once_one_wins(
    nats_server: NatsServer, nc: Client
) -> None:
    """Two connections (as two controllers), ten takes of the one free slot at once:
    the revision check lets exactly one through; a lease past its deadline is free."""
    other = await nats.connect(nats_server.url)
    try:
        stores = [HostSlotsStore(client.jetstream(), Subjects()) for client in (nc, other)]
        for store in stores:
            await store.open(retention_s=60, replicas=1, max_bytes=1024 * 1024)
        later = time.time() + 60
        assert await stores[0].take("ops", 2, {"job0/h0": later})
        taken = await asyncio.gather(
            *(stores[n % 2].take("ops", 2, {f"job{n}/h{n}": later}) for n in range(1, 11))
        )
        assert sorted(taken) == [False] * 9 + [True]
        assert not await stores[1].take("ops", 2, {"late/h": later})

        await stores[1].give_back("ops", ["job0/h0"])
        assert await stores[0].take("ops", 2, {"late/h": later})
        assert await stores[0].take("past", 1, {"old/h": time.time() - 1})
        assert await stores[1].take("past", 1, {"new/h": later})  # the old lease expired
    finally:
        await other.close()
