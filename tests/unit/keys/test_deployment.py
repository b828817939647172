"""appliance/keys/deployment.py: the deployment's secrets, configured or generated once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from appliance.config import Settings
from appliance.keys.deployment import DeploymentSecrets, deployment_secrets


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read APPLIANCE_* from the environment; keep the developer's out."""
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)


def test_generated_once_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = deployment_secrets(settings)
    secrets_dir = tmp_path / "secrets"
    for name, value in [
        ("engine_api_key", first.engine_api_key),
        ("api_key_pepper", first.api_key_pepper),
    ]:
        path = secrets_dir / name
        assert path.read_text(encoding="ascii").strip() == value
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.engine_api_key != first.api_key_pepper
    assert deployment_secrets(settings) == first


def test_configured_secrets_win_over_files(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        engine={"api_key": SecretStr("configured-engine-key")},
        auth={"api_key_pepper": SecretStr("configured-pepper")},
    )
    secrets = deployment_secrets(settings)
    assert secrets.engine_api_key == "configured-engine-key"
    assert secrets.api_key_pepper == "configured-pepper"
    assert not (tmp_path / "secrets").exists()


def test_configured_secret_wins_over_an_existing_file(tmp_path: Path) -> None:
    generated = deployment_secrets(Settings(data_dir=tmp_path))
    configured = deployment_secrets(Settings(data_dir=tmp_path, engine={"api_key": "from-config"}))
    assert configured.engine_api_key == "from-config"
    assert configured.api_key_pepper == generated.api_key_pepper


def test_configured_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_AUTH__API_KEY_PEPPER", "pepper-from-env")
    secrets = deployment_secrets(Settings(data_dir=tmp_path))
    assert secrets.api_key_pepper == "pepper-from-env"
    assert not (tmp_path / "secrets" / "api_key_pepper").exists()
    assert (tmp_path / "secrets" / "engine_api_key").is_file()


def test_repr_hides_both_secrets(tmp_path: Path) -> None:
    secrets = DeploymentSecrets(engine_api_key="engine-s3cret", api_key_pepper="pepper-s3cret")
    for shown in (repr(secrets), str(secrets), f"{secrets}", repr([secrets])):
        assert "engine-s3cret" not in shown
        assert "pepper-s3cret" not in shown
        assert "***" in shown


def test_settings_repr_hides_configured_secrets(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, engine={"api_key": "engine-s3cret"})
    assert "engine-s3cret" not in repr(settings)
    assert "engine-s3cret" not in repr(deployment_secrets(settings))
