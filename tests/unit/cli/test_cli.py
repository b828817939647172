"""appliance/cli: thin commands over library functions, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.errors import InvalidRequest
from appliance.identity import API_KEY_PREFIX

ENGINE_SECRET = "engine-shared-secret-do-not-print-4711"
KEY_PATTERN = re.compile(re.escape(API_KEY_PREFIX) + r"[A-Za-z0-9_-]{43}")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_config(tmp_path: Path, **extra: object) -> Path:
    data: dict[str, object] = {"data_dir": str(tmp_path / "data")}
    data.update(extra)
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, engine={"api_key": ENGINE_SECRET})


@pytest.fixture
def upgraded(runner: CliRunner, config: Path) -> Path:
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "0007" in result.output
    return config


def create_key(runner: CliRunner, config: Path, *args: str) -> tuple[str, str, str]:
    """Run `keys create`; return (key id, secret, output)."""
    result = runner.invoke(
        app, ["keys", "create", "--name", "x", "--owner", "y", "--config", str(config), *args]
    )
    assert result.exit_code == 0, result.output
    key_id = re.search(r"key id: (\S+)", result.output)
    assert key_id is not None, result.output
    secrets = KEY_PATTERN.findall(result.output)
    assert len(secrets) == 1, result.output
    return key_id.group(1), secrets[0], result.output


def run_module(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point (main() turns errors into one line), as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- help -------------------------------------------------------------------------------


def test_help_lists_commands(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])

    assert result.exit_code == 0
    # Rows of the "Commands" panel: "│ name   description"; options start with "--".
    listed = set(re.findall(r"^\W? ([a-z][\w-]*)\s{2,}\S", result.output, flags=re.MULTILINE))
    assert listed == {
        "up", "serve", "plan", "engine", "models", "keys", "identity", "config", "db", "audit",
        "certs", "doctor", "bundle", "witness", "adapters", "receipt", "tco",
    }  # fmt: skip


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output
    assert "keys" in result.output


# -- db and keys ------------------------------------------------------------------------


def test_db_upgrade_creates_database_in_data_dir(
    runner: CliRunner, upgraded: Path, tmp_path: Path
) -> None:
    assert (tmp_path / "data" / "appliance.db").is_file()
    again = runner.invoke(app, ["db", "upgrade", "--config", str(upgraded)])
    assert again.exit_code == 0
    assert "0007" in again.output


def test_keys_create_prints_the_secret_once(runner: CliRunner, upgraded: Path) -> None:
    key_id, secret, output = create_key(runner, upgraded)

    assert output.count(secret) == 1
    assert secret.startswith("sk-appl-")
    assert re.fullmatch(r"[0-9a-f]{12}", key_id)


def test_keys_create_with_roles_models_and_expiry(runner: CliRunner, upgraded: Path) -> None:
    key_id, _secret, _ = create_key(
        runner,
        upgraded,
        "--role",
        "research",
        "--role",
        "appliance-user",
        "--model",
        "llama-*",
        "--expires-in-days",
        "3",
    )
    from appliance.config import load_settings
    from appliance.db import create_db_engine
    from appliance.identity import ApiKeyService
    from appliance.keys import deployment_secrets

    settings = load_settings(upgraded)
    engine = create_db_engine(settings.database_url)
    try:
        service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
        (record,) = service.list()
    finally:
        engine.dispose()
    assert record.key_id == key_id
    assert record.roles == ("research", "appliance-user")
    assert record.models == ("llama-*",)
    assert record.expires_at is not None
    assert round((record.expires_at - record.created_at).total_seconds()) == 3 * 86400


def test_keys_create_refuses_non_positive_expiry(runner: CliRunner, upgraded: Path) -> None:
    result = runner.invoke(
        app,
        [
            *("keys", "create", "--name", "x", "--owner", "y"),
            *("--expires-in-days", "0", "--config", str(upgraded)),
        ],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidRequest)
    assert API_KEY_PREFIX not in result.output


def test_created_key_authenticates_with_the_deployment_pepper(
    runner: CliRunner, upgraded: Path
) -> None:
    from datetime import UTC, datetime

    from appliance.config import load_settings
    from appliance.db import create_db_engine
    from appliance.identity import ApiKeyService
    from appliance.keys import deployment_secrets

    key_id, secret, _ = create_key(runner, upgraded)
    settings = load_settings(upgraded)
    engine = create_db_engine(settings.database_url)
    try:
        service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
        record = service.authenticate(secret, now=datetime.now(UTC))
    finally:
        engine.dispose()
    assert record is not None
    assert record.key_id == key_id
    assert record.roles == ("appliance-user",)


def test_keys_list_wide_terminal_shows_id_never_secret(
    runner: CliRunner, upgraded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    key_id, secret, _ = create_key(runner, upgraded)

    result = runner.invoke(app, ["keys", "list", "--config", str(upgraded)])

    assert result.exit_code == 0, result.output
    assert key_id in result.output
    assert "active" in result.output
    assert secret not in result.output
    assert secret.removeprefix(API_KEY_PREFIX)[:12] not in result.output
    assert API_KEY_PREFIX not in result.output


def test_keys_list_default_width_shows_full_key_id(
    runner: CliRunner, upgraded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what Rich uses when output is piped
    key_id, _secret, _ = create_key(runner, upgraded)

    result = runner.invoke(app, ["keys", "list", "--config", str(upgraded)])

    assert result.exit_code == 0
    assert key_id in result.output


def test_keys_revoke_then_revoke_again_fails(
    runner: CliRunner, upgraded: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    key_id, _secret, _ = create_key(runner, upgraded)
    other_id, _other, _ = create_key(runner, upgraded)

    first = runner.invoke(app, ["keys", "revoke", key_id, "--config", str(upgraded)])
    assert first.exit_code == 0, first.output
    assert f"revoked {key_id}" in first.output

    listing = runner.invoke(app, ["keys", "list", "--config", str(upgraded)])
    rows = {line.split()[1]: line for line in listing.output.splitlines() if key_id in line}
    assert "revoked" in rows[key_id]
    other_row = next(line for line in listing.output.splitlines() if other_id in line)
    assert "active" in other_row

    second = runner.invoke(app, ["keys", "revoke", key_id, "--config", str(upgraded)])
    assert second.exit_code != 0
    assert isinstance(second.exception, InvalidRequest)
    assert key_id in second.exception.message


def test_keys_revoke_unknown_id_is_a_one_line_error(config: Path, tmp_path: Path) -> None:
    assert run_module(tmp_path, "db", "upgrade", "--config", str(config)).returncode == 0

    result = run_module(tmp_path, "keys", "revoke", "nosuchkey", "--config", str(config))

    assert result.returncode == 1
    assert result.stderr.strip() == "error: no active key with id nosuchkey"
    assert "Traceback" not in result.stderr


# -- config -----------------------------------------------------------------------------


def test_config_show_masks_secrets(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        engine={"api_key": ENGINE_SECRET, "port": 8123},
        auth={"api_key_pepper": "pepper-do-not-print"},
        database={"url": "postgresql+psycopg://app:pw-do-not-print@db/appl"},
    )

    result = runner.invoke(app, ["config", "show", "--config", str(config)])

    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["engine"]["api_key"] == "**********"
    assert shown["engine"]["port"] == 8123
    assert shown["auth"]["api_key_pepper"] == "**********"
    assert shown["database"]["url"] == "postgresql+psycopg://app:***@db/appl"
    for secret in (ENGINE_SECRET, "pepper-do-not-print", "pw-do-not-print"):
        assert secret not in result.output


def test_config_show_reflects_environment(
    runner: CliRunner, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # see test_config_show_is_yaml_at_default_width
    monkeypatch.setenv("APPLIANCE_GATEWAY__PORT", "8999")
    result = runner.invoke(app, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["gateway"]["port"] == 8999


def test_config_show_prints_values_verbatim(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # isolate from the line-wrapping bug
    generation = '{"stop": ["[/INST]"]}'
    config = write_config(
        tmp_path, engine={"extra_args": ["--override-generation-config", generation]}
    )

    result = runner.invoke(app, ["config", "show", "--config", str(config)])

    assert result.exit_code == 0, repr(result.exception)
    assert yaml.safe_load(result.output)["engine"]["extra_args"][1] == generation


def test_config_show_is_yaml_at_default_width(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what Rich uses when output is piped
    data_dir = tmp_path / ("d" * 60)
    config = write_config(tmp_path, data_dir=str(data_dir))

    result = runner.invoke(app, ["config", "show", "--config", str(config)])

    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["database"]["url"] == f"sqlite:///{(data_dir / 'appliance.db').resolve()}"


def test_invalid_config_is_a_short_error_without_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path, engine={"port": "abc"})

    result = run_module(tmp_path, "config", "show", "--config", str(config))

    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # One line, naming the offending key, however narrow the terminal.
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: invalid configuration")
    assert "engine.port" in lines[0]


def test_missing_config_file_is_a_short_error(tmp_path: Path) -> None:
    result = run_module(tmp_path, "config", "show", "--config", str(tmp_path / "nope.yaml"))

    assert result.returncode == 1
    assert result.stderr.startswith("error: configuration file not found")
    assert "Traceback" not in result.stderr


# -- engine -----------------------------------------------------------------------------


def test_engine_command_never_prints_the_secret(
    runner: CliRunner, config: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["engine", "command", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert ENGINE_SECRET not in result.output
    assert "VLLM_API_KEY='<shared secret>'" in result.output.splitlines()
    assert "HF_HUB_OFFLINE=1" in result.output.splitlines()
    argv_line = result.output.strip().splitlines()[-1]
    assert "-m appliance.engine.vllm_cli serve" in argv_line
    assert "--dtype float32" in argv_line
    assert "--api-key" not in argv_line
    # Printing a command must not generate secrets as a side effect.
    assert not (tmp_path / "data" / "secrets").exists()


def test_engine_command_without_configured_secret(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path, engine={"device": "gpu", "port": 8201})

    result = runner.invoke(app, ["engine", "command", "--config", str(config)])

    assert result.exit_code == 0, result.output
    assert "VLLM_API_KEY='<shared secret>'" in result.output.splitlines()
    assert "--dtype auto" in result.output
    assert "--port 8201" in result.output
    assert "VLLM_CPU_KVCACHE_SPACE" not in result.output
