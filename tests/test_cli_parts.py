"""The ``nexec`` command's pure parts, without processes: host lists, the exit rule,
connection precedence, grouping and summaries, and what the admin subcommands import."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from nexec.cli import CLIENT_COMMANDS, CLIENT_GROUPS, build_parser, split_command
from nexec.cli.connection import DEFAULT_URL, SettingsError, connection, resolve
from nexec.cli.exit_status import exit_status, host_status
from nexec.cli.fleet import since_time, table
from nexec.cli.hostlist import compact
from nexec.cli.render import Human
from nexec.cli.terminal import Terminal
from schemas.messages import ExecResult, ResultStatus


def result(
    host: str, status: str = "completed", exit_code: int | None = 0, **fields: str
) -> ExecResult:
    return ExecResult(
        job_id="j", hostname=host, status=ResultStatus(status), exit_code=exit_code, **fields
    )


@pytest.mark.parametrize(
    ("names", "compacted"),
    [
        (["web1", "web2", "web3", "web7"], "web[1-3,7]"),
        (["web7"], "web7"),
        (["db1", "web2", "web1", "lb"], "db1,lb,web[1-2]"),
        (["n01", "n02", "n03"], "n[01-03]"),
        (["web1.lan", "web2.lan", "web1.dmz"], "web1.dmz,web[1-2].lan"),
        ([], ""),
    ],
)
def test_host_lists_are_compacted(names: list[str], compacted: str) -> None:
    assert compact(names) == compacted


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (result("a"), 0),
        (result("a", exit_code=3), 3),
        (result("a", exit_code=-9), 137),
        (result("a", "timeout", None), 124),
        (result("a", "failed", None), 255),
        (result("a", "cancelled", None), 255),
        (result("a", "no_reply", None), 255),
    ],
)
def test_each_host_status(outcome: ExecResult, status: int) -> None:
    assert host_status(outcome) == status


def test_the_exit_status_is_the_highest_host_status() -> None:
    assert exit_status([]) == 0
    assert exit_status([result("a"), result("b")]) == 0
    assert exit_status([result("a", exit_code=3), result("b", "timeout", None)]) == 124
    assert exit_status([result("a", exit_code=200), result("b", "timeout", None)]) == 200
    assert exit_status([result("a", exit_code=1), result("b", "no_reply", None)]) == 255


def test_flag_beats_environment_beats_config_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("nxk_from_file\n")
    config = {"url": "http://config:1", "api_key": "nxk_config"}
    env = {"url": "http://env:1", "api_key_file": key_file}
    assert resolve({}, {}, {}) == resolve({}, {}, {}) and resolve({}, {}, {}).url == DEFAULT_URL
    chosen = resolve({"url": None, "api_key": None}, env, config)
    assert (chosen.url, chosen.api_key) == ("http://env:1", "nxk_from_file")
    chosen = resolve({"url": "http://flag:1", "api_key": "nxk_flag"}, env, config)
    assert (chosen.url, chosen.api_key) == ("http://flag:1", "nxk_flag")
    assert resolve({}, {}, config).api_key == "nxk_config"
    assert "nxk" not in repr(chosen)
    with pytest.raises(SettingsError, match="both a key and a key file"):
        resolve({"api_key": "k", "api_key_file": key_file}, {}, {})
    with pytest.raises(SettingsError, match="cannot read the key file"):
        resolve({"api_key_file": tmp_path / "missing"}, {}, {})


def test_the_config_file_and_its_relative_key_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("nxk_file\n")
    config = tmp_path / "client.toml"
    config.write_text('url = "http://there:8080"\napi_key_file = "key"\n')
    flags = argparse.Namespace(url=None, key=None, key_file=None, config=config)
    chosen = connection(flags, {})
    assert (chosen.url, chosen.api_key) == ("http://there:8080", "nxk_file")
    from_env = connection(argparse.Namespace(url=None, key=None, key_file=None, config=None),
                          {"NEXEC_CONFIG": str(config), "NEXEC_API_KEY": "nxk_env"})  # fmt: skip
    assert (from_env.url, from_env.api_key) == ("http://there:8080", "nxk_env")
    config.write_text('api_kee = "typo"\n')
    with pytest.raises(SettingsError, match="unknown field"):
        connection(flags, {})


def human(*, grouped: bool = False, prefixed: bool = True) -> tuple[Human, Terminal]:
    terminal = Terminal(out=io.StringIO(), err=io.StringIO())
    return Human(terminal, prefixed=prefixed, stream=False, grouped=grouped), terminal


def test_grouping_puts_identical_hosts_under_one_header() -> None:
    view, terminal = human(grouped=True)
    results = [
        result("web1", stdout="same\n"),
        result("web2", stdout="same\n"),
        result("web3", exit_code=2, stdout="same\n", stderr="oops\n"),
        result("web7", stdout="same\n"),
        result("db1", "no_reply", None, error="no reply within 2.0s"),
    ]
    view.expect([r.hostname for r in results], live=False)
    for item in results:
        view.result(item)
    assert view.finish(results) == 255
    assert isinstance(terminal.out, io.StringIO) and isinstance(terminal.err, io.StringIO)
    assert terminal.out.getvalue() == (
        "---------------\ndb1 (1): no_reply: no reply within 2.0s\n---------------\n"
        "---------------\nweb[1-2,7] (3)\n---------------\nsame\n"
        "---------------\nweb3 (1): exit 2\n---------------\nsame\n"
    )
    assert terminal.err.getvalue() == (
        "web3: oops\n"
        "5 hosts: 4 completed, 1 no_reply\n"
        "  db1: no_reply: no reply within 2.0s\n"
        "  web3: exit 2\n"
    )


def test_one_host_is_shown_as_ssh_would() -> None:
    view, terminal = human(prefixed=False)
    view.result(result("web1", exit_code=1, stdout="no newline", stderr="err\n"))
    assert view.finish([]) == 0
    assert isinstance(terminal.out, io.StringIO) and isinstance(terminal.err, io.StringIO)
    assert (terminal.out.getvalue(), terminal.err.getvalue()) == ("no newline", "err\n")


def test_tables_and_times() -> None:
    assert table(["A", "BB"], [["xxx", "y"]]) == "A    BB\nxxx  y\n"
    assert since_time("2h", now=10_000.0) == 10_000.0 - 7200
    assert since_time("1764700000") == 1764700000.0
    assert since_time("2025-12-02T18:26:40") == 1764700000.0
    with pytest.raises(argparse.ArgumentTypeError):
        since_time("yesterday")


def test_client_commands_are_the_client_groups_parsers() -> None:
    parser = build_parser(["exec"])
    [subcommands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subcommands.choices) == CLIENT_COMMANDS
    assert CLIENT_GROUPS == ("run", "fleet")


def test_admin_subcommands_and_help_do_not_import_aiohttp(tmp_path: Path) -> None:
    script = (
        "import sys\nfrom nexec.cli import main\n"
        f"assert main(['keys', 'list', '--keys-file', {str(tmp_path / 'k.json')!r}]) == 1\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'nats')]\n"
        "assert not loaded, loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    helped = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom nexec.cli import main\n"
         "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
         "assert 'aiohttp' not in sys.modules"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    assert "124 for a host that timed out" in helped.stdout


def test_the_command_after_the_first_double_dash_is_kept_whole() -> None:
    assert split_command(["exec", "web1", "--timeout", "5", "--", "grep", "--", "-v"]) == (
        ["exec", "web1", "--timeout", "5"],
        ["grep", "--", "-v"],
    )
    assert split_command(["exec", "web1", "true"]) == (["exec", "web1", "true"], None)
    assert split_command(["shell", "web1", "--", "x"]) == (["shell", "web1", "--", "x"], None)


def test_the_exec_path_loads_only_the_schemas_it_needs() -> None:
    """``schemas`` re-exports nothing: the command's client loads the HTTP bodies and
    messages, not the decoders, subjects or targets (performance.md N6)."""
    script = (
        "import sys\nimport nexec.cli.run, nexec._client\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('schemas.'))\n"
        "assert loaded == ['schemas.api', 'schemas.limits', 'schemas.messages'], loaded\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
