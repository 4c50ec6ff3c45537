"""Every setting has a flag named after it, and every flag spelling of before stays an alias."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest

from agentd.config import AgentConfig
from agentd.main import parse_args as agent_args
from controller.config import ControllerConfig
from controller.main import parse_args as controller_args
from runtime.settings import declared, given_flags
from runtime.signing import JobSigner, create_seed

NATS_OLD_FLAGS: list[tuple[list[str], str, Any]] = [
    (["--nats-user", "u"], "nats_user", "u"),
    (["--nats-password", "p"], "nats_password", "p"),
    (["--nats-creds", "/c.creds"], "nats_creds_file", Path("/c.creds")),
    (["--nats-nkey-seed", "/s.nk"], "nats_nkey_seed_file", Path("/s.nk")),
    (["--nats-tls-ca", "/ca.pem"], "nats_tls_ca_file", Path("/ca.pem")),
    (["--nats-tls-cert", "/c.pem"], "nats_tls_cert_file", Path("/c.pem")),
    (["--nats-tls-key", "/k.pem"], "nats_tls_key_file", Path("/k.pem")),
]

# Every flag the hand-written parsers had (as of the commit before "settings declared
# once"): the old spelling, a value, the field it sets and the value it must set.
CONTROLLER_OLD_FLAGS: list[tuple[list[str], str, Any]] = [
    (["--nats-url", "nats://127.0.0.1:1"], "nats_url", "nats://127.0.0.1:1"),
    (["--listen", "127.0.0.1:0"], "listen", "127.0.0.1:0"),
    (["--keys-file", "/k.json"], "keys_file", Path("/k.json")),
    (["--keys-reload-interval", "7"], "keys_reload_interval_s", 7.0),
    (["--subject-prefix", "acme"], "subject_prefix", "acme"),
    (["--delivery-margin", "7"], "delivery_margin_s", 7.0),
    (["--delivery-timeout", "7"], "delivery_timeout_s", 7.0),
    (["--job-retention", "7000"], "job_retention_s", 7000.0),
    (["--jetstream-replicas", "3"], "jetstream_replicas", 3),
    (["--state-check-interval", "7"], "state_check_interval_s", 7.0),
    (["--max-body-bytes", "7000"], "max_body_bytes", 7000),
    (["--job-signing-key-file", "/c.nk"], "job_signing_key_file", Path("/c.nk")),
    (["--rate-limit", "7"], "rate_limit_per_s", 7.0),
    (["--http-read-timeout", "7"], "http_read_timeout_s", 7.0),
    (["--http-max-connections", "7"], "http_max_connections", 7),
    (["--access-log"], "access_log", True),
    *NATS_OLD_FLAGS,
]

AGENT_OLD_FLAGS: list[tuple[list[str], str, Any]] = [
    (["--nats-url", "nats://127.0.0.1:1"], "nats_url", "nats://127.0.0.1:1"),
    (["--hostname", "h1"], "hostname", "h1"),
    (["--label", "a:b", "--label", "c:d"], "labels", {"a": "b", "c": "d"}),
    (["--subject-prefix", "acme"], "subject_prefix", "acme"),
    (["--max-concurrent-jobs", "7"], "max_concurrent_jobs", 7),
    (["--output-cap-bytes", "7000"], "output_cap_bytes", 7000),
    (["--kill-grace", "7"], "kill_grace_s", 7.0),
    (["--heartbeat-interval", "7"], "heartbeat_interval_s", 7.0),
    (["--drain-timeout", "7"], "drain_timeout_s", 7.0),
    (["--allow-shell"], "allow_shell", True),
    (
        ["--allow-command", "uptime", "--allow-command", "/bin/df"],
        "allowed_commands",
        ["uptime", "/bin/df"],
    ),
    (["--state-dir", "/tmp/x"], "state_dir", Path("/tmp/x")),
    (["--run-as-user", "nobody"], "run_as_user", "nobody"),
    (["--run-as-group", "nogroup"], "run_as_group", "nogroup"),
    *NATS_OLD_FLAGS,
]

SIGNER = JobSigner(create_seed()).public_key


def _settings(parse: Any, argv: list[str]) -> dict[str, Any]:
    return given_flags(parse(argv), exclude={"config", "log_level"})


def _validated(model: type[pydantic.BaseModel], flags: dict[str, Any], name: str) -> Any:
    base: dict[str, Any] = {"hostname": "h1"} if model is AgentConfig else {}
    if name in ("nats_user", "nats_password"):
        base.update(nats_user="u", nats_password="p")
    if name in ("nats_tls_cert_file", "nats_tls_key_file"):
        base.update(nats_tls_cert_file="/c.pem", nats_tls_key_file="/k.pem")
    return getattr(model.model_validate({**base, **flags}), name)


@pytest.mark.parametrize(("argv", "name", "expected"), CONTROLLER_OLD_FLAGS)
def test_old_controller_flags_still_set_their_field(
    argv: list[str], name: str, expected: Any
) -> None:
    flags = _settings(controller_args, argv)
    assert list(flags) == [name]
    assert _validated(ControllerConfig, flags, name) == expected


@pytest.mark.parametrize(("argv", "name", "expected"), AGENT_OLD_FLAGS)
def test_old_agent_flags_still_set_their_field(argv: list[str], name: str, expected: Any) -> None:
    flags = _settings(agent_args, argv)
    assert list(flags) == [name]
    assert _validated(AgentConfig, flags, name) == expected


def _sample_argv(model: type[pydantic.BaseModel], name: str) -> list[str]:
    """``--<field>`` with a valid value for that field."""
    flag = "--" + name.replace("_", "-")
    samples: dict[str, list[str]] = {
        "listen": ["127.0.0.1:0"],
        "metrics_listen": ["127.0.0.1:9464"],
        "labels": ["a:b"],
        "base_env": ["PATH=/bin"],
        "trusted_signers": [SIGNER],
        "subject_prefix": ["acme"],
        "hostname": ["h1"],
        "nats_url": ["nats://127.0.0.1:1"],
        "log_format": ["json"],
    }
    annotation = model.model_fields[name].annotation
    if annotation is bool:
        return [flag]
    if name in samples:
        return [flag, *samples[name]]
    if annotation in (int, float):
        return [flag, "7000" if name.endswith(("_bytes", "retention_s")) else "3"]
    return [flag, "/x" if name.endswith(("_file", "_dir")) else "x"]


@pytest.mark.parametrize(
    ("model", "parse"), [(ControllerConfig, controller_args), (AgentConfig, agent_args)]
)
def test_every_setting_has_a_flag_named_after_it(
    model: type[pydantic.BaseModel], parse: Any
) -> None:
    for name in model.model_fields:
        flags = _settings(parse, _sample_argv(model, name))
        assert list(flags) == [name], name
        _validated(model, flags, name)


def test_boolean_flags_turn_on_and_off() -> None:
    assert _settings(agent_args, ["--allow-shell"]) == {"allow_shell": True}
    assert _settings(agent_args, ["--no-allow-request-env"]) == {"allow_request_env": False}
    assert _settings(controller_args, ["--no-access-log"]) == {"access_log": False}


def test_base_env_flag_builds_the_environment() -> None:
    flags = _settings(agent_args, ["--base-env", "PATH=/bin", "--base-env", "X=a,b=c"])
    config = AgentConfig.model_validate({"hostname": "h1", **flags})
    assert config.base_env == {"PATH": "/bin", "X": "a,b=c"}
    with pytest.raises(pydantic.ValidationError, match="NAME=VALUE"):
        AgentConfig.model_validate({"hostname": "h1", "base_env": ["PATH"]})


@pytest.mark.parametrize("parse", [controller_args, agent_args])
def test_help_names_unit_default_and_environment(
    parse: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--connect-timeout-s SECONDS" in text
    assert "NEXEC_CONNECT_TIMEOUT_S" in text
    assert "--nats-tls-key-file FILE, --nats-tls-key FILE" in text


@pytest.mark.parametrize("model", [ControllerConfig, AgentConfig])
def test_every_setting_is_declared_with_its_help(model: type[pydantic.BaseModel]) -> None:
    """A field added without ``setting(..., help=...)`` has no --help line nor docs meaning."""
    undeclared = [
        name
        for name, info in model.model_fields.items()
        if not info.description or "aliases" not in declared(info)
    ]
    assert not undeclared, f"declare these with runtime.settings.setting(): {undeclared}"


@pytest.mark.parametrize("model", [ControllerConfig, AgentConfig])
def test_both_processes_refuse_a_prefix_that_is_no_subject_token(
    model: type[ControllerConfig] | type[AgentConfig],
) -> None:
    """The one check of ``subject_prefix`` (runtime/settings.py) holds in both settings."""
    with pytest.raises(pydantic.ValidationError, match="invalid subject prefix"):
        model(subject_prefix="a b")
    assert model(subject_prefix="acme").subjects.jobs_stream() == "acme_jobs"
