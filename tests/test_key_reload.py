"""Keys are revoked without a restart: the controller reloads its keys file on SIGHUP
and when the file changes; a bad file keeps the old keys; expired keys get 401."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from controller.keys.reload import KeysReloader
from controller.keys.store import PERMISSIONS, KeyExpired, KeyStore, create_key, parse_duration
from nexec.cli import main as nexec_main
from nexec.dev.processes import ManagedProcess
from nexec.dev.stack import CONTROLLER_READY_RE
from tests.helpers import STARTUP_TIMEOUT_S, MakeController, NatsServer

POLL_INTERVAL_S = 0.05


def replace_content(keys_file: Path, text: str | None) -> None:
    """Write ``text`` into the keys file in place, or delete the file (None)."""
    if text is None:
        keys_file.unlink()
    else:
        keys_file.write_text(text)


def remove_key(keys_file: Path, name: str) -> None:
    """Drop a key's entry by editing the file, as an operator with an editor would."""
    content = json.loads(keys_file.read_text())
    content["keys"] = [entry for entry in content["keys"] if entry["name"] != name]
    keys_file.write_text(json.dumps(content))


async def status_of(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, object]:
    async with session.get(url, headers={"Authorization": f"Bearer {key}"}) as response:
        return response.status, await response.json()


async def wait_for_status(
    session: aiohttp.ClientSession, url: str, key: str, status: int
) -> object:
    """Ask until the key gets ``status``, within a bounded time; returns that answer's body."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        got, body = await status_of(session, url, key)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"still {got} {body}, expected {status}"
        await asyncio.sleep(POLL_INTERVAL_S)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    create_key(path, name="admin", permissions=sorted(PERMISSIONS), targets=[])
    return path


@pytest.fixture
def controller_process(nats_server: NatsServer, keys_file: Path) -> Iterator[ManagedProcess]:
    """A real controller whose file check is too rare to matter: only SIGHUP reloads."""
    process = ManagedProcess(
        [sys.executable, "-m", "controller", "--nats-url", nats_server.url,
         "--listen", "127.0.0.1:0", "--keys-file", str(keys_file)],
        name="controller",
        env={**os.environ, "NEXEC_KEYS_RELOAD_INTERVAL_S": "3600"},
    )  # fmt: skip
    yield process
    process.stop()


async def test_a_revoked_key_is_refused_after_sighup(
    controller_process: ManagedProcess, keys_file: Path
) -> None:
    admin = create_key(keys_file, name="admin2", permissions=["node:read"], targets=[])
    victim = create_key(keys_file, name="victim", permissions=["node:read"], targets=[])
    ready = await asyncio.to_thread(controller_process.wait_for_line, CONTROLLER_READY_RE, 30)
    url = f"http://127.0.0.1:{ready['port']}/node"
    async with aiohttp.ClientSession() as session:
        assert (await status_of(session, url, victim))[0] == 200
        remove_key(keys_file, "victim")
        controller_process.popen.send_signal(signal.SIGHUP)
        body = await wait_for_status(session, url, victim, 401)
        assert body == {"error": "unauthorized", "details": "unknown API key", "code": 401}
        assert (await status_of(session, url, admin))[0] == 200
    assert controller_process.popen.poll() is None, "SIGHUP must not stop the controller"


async def test_a_bad_keys_file_keeps_the_old_keys(
    controller_process: ManagedProcess, keys_file: Path
) -> None:
    victim = create_key(keys_file, name="victim", permissions=["node:read"], targets=[])
    ready = await asyncio.to_thread(controller_process.wait_for_line, CONTROLLER_READY_RE, 30)
    url = f"http://127.0.0.1:{ready['port']}/node"
    good = await asyncio.to_thread(keys_file.read_text)
    async with aiohttp.ClientSession() as session:
        for bad, reason in [
            ("{not json", "invalid"),
            (good.replace('"node:read"', '"root"'), "unknown"),
            (None, "cannot read keys file"),
        ]:
            replace_content(keys_file, bad)
            controller_process.popen.send_signal(signal.SIGHUP)
            warning = re.compile(rf"WARNING .*keeping the 2 old keys: .*{reason}")
            await asyncio.to_thread(controller_process.wait_for_line, warning, 30)
            assert (await status_of(session, url, victim))[0] == 200
        replace_content(keys_file, good)
        remove_key(keys_file, "victim")
        controller_process.popen.send_signal(signal.SIGHUP)
        await wait_for_status(session, url, victim, 401)


async def test_a_revoked_key_is_refused_once_the_file_changes(
    make_controller: MakeController, keys_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller = await make_controller(
        keys={"victim": (["node:read"], [])}, keys_reload_interval_s=0.1
    )
    victim = controller.extra_keys["victim"]
    async with aiohttp.ClientSession() as session:
        url = controller.url + "/node"
        assert (await status_of(session, url, victim))[0] == 200
        argv = ["keys", "revoke", "--keys-file", str(controller.keys_file), "--name", "victim"]
        assert nexec_main(argv) == 0
        await wait_for_status(session, url, victim, 401)
        assert (await status_of(session, url, controller.api_key))[0] == 200
    assert stat.S_IMODE(controller.keys_file.stat().st_mode) == 0o600
    assert nexec_main(["keys", "list", "--keys-file", str(controller.keys_file)]) == 0
    assert "victim" not in capsys.readouterr().out


async def test_an_expired_key_is_refused(make_controller: MakeController) -> None:
    controller = await make_controller(keys_reload_interval_s=0.1)
    expired_at = time.time() - 1
    old = create_key(
        controller.keys_file, name="old", permissions=["node:read"], targets=[],
        expires_at=expired_at,
    )  # fmt: skip
    async with aiohttp.ClientSession() as session:
        url = controller.url + "/node"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while (body := (await status_of(session, url, old))[1]) == {
            "error": "unauthorized",
            "details": "unknown API key",
            "code": 401,
        }:  # until the file change is noticed
            assert time.monotonic() < deadline
            await asyncio.sleep(POLL_INTERVAL_S)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expired_at))
        assert body == {
            "error": "unauthorized",
            "details": f"API key 'old' expired at {when}",
            "code": 401,
        }


def test_the_file_is_read_again_only_when_it_changes(
    keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    victim = create_key(keys_file, name="victim", permissions=["job:read"], targets=[])
    store = KeyStore([])
    reloader = KeysReloader(store, keys_file, interval_s=1.0)
    assert reloader.reload() and len(store) == 2
    assert not reloader.reload_if_changed()
    good = keys_file.read_text()
    keys_file.write_text("[]")
    assert not reloader.reload_if_changed()
    assert not reloader.reload_if_changed()  # the same bad file: one warning, not one a check
    assert reloader.failures == 1 and reloader.reloads == 1
    [warning] = [record for record in caplog.records if record.levelname == "WARNING"]
    assert "keeping the 2 old keys" in warning.getMessage()
    assert store.authenticate(victim) is not None
    keys_file.write_text(good)
    remove_key(keys_file, "victim")
    assert reloader.reload_if_changed() and len(store) == 1
    assert store.authenticate(victim) is None


def test_expiry_takes_effect_without_a_reload(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = create_key(
        keys_file, name="short", permissions=["job:read"], targets=[], expires_at=1000.0
    )
    store = KeyStore.load(keys_file)
    api_key = store.authenticate(key, now=999.0)
    assert api_key is not None and api_key.name == "short"
    with pytest.raises(KeyExpired) as raised:
        store.authenticate(key, now=1000.0)
    assert raised.value.name == "short" and raised.value.expires_at == 1000.0
    assert store.authenticate("nxk_other", now=1000.0) is None


def test_keys_create_expires_and_list_shows_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.json"
    argv = ["keys", "create", "--keys-file", str(keys_file), "--perm", "job:read"]
    before = time.time()
    assert nexec_main([*argv, "--name", "month", "--expires", "30d"]) == 0
    assert nexec_main([*argv, "--name", "forever"]) == 0
    capsys.readouterr()
    month, forever = json.loads(keys_file.read_text())["keys"]
    assert before + 30 * 86400 <= month["expires_at"] <= time.time() + 30 * 86400
    assert "expires_at" not in forever  # readable by controllers that predate expiry
    assert nexec_main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(month["expires_at"]))
    assert capsys.readouterr().out == (
        f"month\tjob:read\t*\texpires {when}\nforever\tjob:read\t*\tnever expires\n"
    )


def test_a_keys_file_without_expiry_still_loads(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    key = "nxk_" + "a" * 43
    entry = {"name": "legacy", "sha256": hashlib.sha256(key.encode()).hexdigest(),
             "permissions": ["job:read"], "targets": [], "created_at": 1.0}  # fmt: skip
    keys_file.write_text(json.dumps({"keys": [entry]}))
    api_key = KeyStore.load(keys_file).authenticate(key)
    assert api_key is not None and api_key.name == "legacy"


def test_keys_revoke_of_an_unknown_name_exits_2(
    keys_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "revoke", "--keys-file", str(keys_file), "--name", "nobody"]
    assert nexec_main(argv) == 2
    assert capsys.readouterr().err == f"nexec: keys file {keys_file} has no key named 'nobody'\n"
    assert [entry["name"] for entry in json.loads(keys_file.read_text())["keys"]] == ["admin"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("3600s", 3600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "-1d", "1.5h", "3w", "30 d", "99999999d"])
def test_bad_expires_is_refused_clearly(
    text: str, keys_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "create", "--keys-file", str(keys_file), "--name", "x", "--perm", "job:read"]
    with pytest.raises(SystemExit) as exited:
        nexec_main([*argv, f"--expires={text}"])
    assert exited.value.code == 2
    assert f"argument --expires: invalid duration {text!r}: expected" in capsys.readouterr().err
