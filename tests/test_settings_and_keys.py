"""Settings from file, environment and flags; API keys created by the CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agentd.config import AgentConfig
from controller.config import ControllerConfig
from controller.keys.store import KeysFileError, KeyStore, create_key
from nexec.cli import main as nexec_main
from runtime.settings import SettingsError, load_settings, server_urls
from runtime.signing import write_seed_file


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        'hostname = "from-file"\nmax_concurrent_jobs = 3\nlabels = ["env:file"]\n'
        'nats_url = "nats://127.0.0.1:1"\n'
    )
    config = load_settings(
        AgentConfig,
        config_file=config_file,
        environ={"NEXEC_HOSTNAME": "from-env", "NEXEC_LABELS": "env:env,role:web"},
        flags={"hostname": "from-flag"},
    )
    assert config.hostname == "from-flag"
    assert config.labels == {"env": "env", "role": "web"}
    assert config.max_concurrent_jobs == 3
    assert config.nats_url == "nats://127.0.0.1:1"


def test_unknown_or_invalid_settings_are_named(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text("max_concurent_jobs = 3\n")
    with pytest.raises(SettingsError, match="max_concurent_jobs"):
        load_settings(AgentConfig, config_file=config_file, environ={}, flags={})
    with pytest.raises(SettingsError, match="max_concurrent_jobs"):
        load_settings(
            AgentConfig, config_file=None, environ={"NEXEC_MAX_CONCURRENT_JOBS": "0"}, flags={}
        )
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(AgentConfig, config_file=tmp_path / "missing.toml", environ={}, flags={})


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_file = tmp_path / "keys.json"
    argv = ["keys", "create", "--keys-file", str(keys_file), "--name", "ops"]
    exit_code = nexec_main(
        [*argv, "--perm", "command:exec", "--perm", "node:read", "--target", "web*"]
    )
    assert exit_code == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("nxk_") and len(key) > 40
    text = keys_file.read_text()
    assert key not in text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    [entry] = json.loads(text)["keys"]
    assert entry["name"] == "ops"
    assert entry["permissions"] == ["command:exec", "node:read"]
    assert entry["targets"] == ["web*"]
    api_key = KeyStore.load(keys_file).authenticate(key)
    assert api_key is not None and api_key.name == "ops"
    assert KeyStore.load(keys_file).authenticate(key + "x") is None

    assert nexec_main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    assert capsys.readouterr().out == "ops\tcommand:exec,node:read\tweb*\tnever expires\n"


def test_keys_create_refuses_a_duplicate_name_and_unknown_permissions(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    create_key(keys_file, name="ops", permissions=["command:exec"], targets=[])
    with pytest.raises(KeysFileError, match="already has a key named 'ops'"):
        create_key(keys_file, name="ops", permissions=["command:exec"], targets=[])
    with pytest.raises(KeysFileError, match="unknown permission"):
        create_key(keys_file, name="other", permissions=["root"], targets=[])


def test_a_tampered_keys_file_is_rejected(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text('{"keys": [{"name": "x", "sha256": "abc", "permissions": []}]}')
    with pytest.raises(KeysFileError, match="no valid sha256"):
        KeyStore.load(keys_file)


def test_example_config_files_are_valid() -> None:
    examples = Path(__file__).parent.parent / "deploy" / "examples"
    agent = load_settings(
        AgentConfig, config_file=examples / "agent.toml", environ={}, flags={"hostname": "h1"}
    )
    assert agent.labels == {"env": "prod", "role": "web"}
    controller = load_settings(
        ControllerConfig, config_file=examples / "controller.toml", environ={}, flags={}
    )
    assert controller.keys_file == Path("/etc/nexec/keys.json")


def test_nats_client_options_from_settings(tmp_path: Path) -> None:
    config = load_settings(
        AgentConfig,
        config_file=None,
        environ={"NEXEC_NATS_USER": "agent", "NEXEC_NATS_PASSWORD": "pw"},
        flags={
            "hostname": "h1",
            "nats_creds_file": tmp_path / "a.creds",
            "reconnect_wait_s": 0.25,
        },
    )
    assert config.nats_connect_options() == {
        "reconnect_time_wait": 0.25,
        "user": "agent",
        "password": "pw",
        "user_credentials": str(tmp_path / "a.creds"),
    }
    with pytest.raises(SettingsError, match="nats_user and nats_password go together"):
        load_settings(AgentConfig, config_file=None, environ={"NEXEC_NATS_USER": "x"}, flags={})


def test_lists_from_the_environment_are_comma_separated(tmp_path: Path) -> None:
    first = write_seed_file(tmp_path / "a.nk").public_key
    second = write_seed_file(tmp_path / "b.nk").public_key
    config = load_settings(
        AgentConfig,
        config_file=None,
        environ={
            "NEXEC_TRUSTED_SIGNERS": f"{first}, {second}",
            "NEXEC_ALLOWED_COMMANDS": "uptime,/usr/bin/systemctl",
            "NEXEC_NATS_URL": "nats://127.0.0.1:4222,nats://127.0.0.1:4223",
        },
        flags={"hostname": "h1"},
    )
    assert config.trusted_signers == [first, second]
    assert config.allowed_commands == ["uptime", "/usr/bin/systemctl"]
    assert server_urls(config.nats_url) == ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223"]


def test_base_env_comes_from_the_file_only(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text('[base_env]\nPATH = "/usr/bin:/bin"\nGREETING = "a,b"\n')
    config = load_settings(AgentConfig, config_file=config_file, environ={}, flags={})
    assert config.base_env == {"PATH": "/usr/bin:/bin", "GREETING": "a,b"}
    with pytest.raises(SettingsError, match=r"base_env: .*table in the config file"):
        load_settings(
            AgentConfig, config_file=None, environ={"NEXEC_BASE_ENV": "PATH=/bin"}, flags={}
        )


def test_a_malformed_trusted_signer_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match=r"trusted_signers: .*checksum"):
        load_settings(
            AgentConfig,
            config_file=None,
            environ={"NEXEC_TRUSTED_SIGNERS": "U" + "A" * 55},
            flags={"hostname": "h1"},
        )
