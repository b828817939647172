"""appliance/config.py: defaults, YAML + APPLIANCE_* environment, errors, masking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import (
    Settings,
    UpstreamSettings,
    load_settings,
    masked_settings,
)
from appliance.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No stray ./appliance.yaml, no APPLIANCE_* variable from the caller's shell."""
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# -- defaults ---------------------------------------------------------------------------


def test_defaults_without_any_file(tmp_path: Path) -> None:
    settings = load_settings()

    assert settings.data_dir == Path(".data")
    assert settings.database.url is None
    assert settings.database_url == f"sqlite:///{(tmp_path / '.data' / 'appliance.db').resolve()}"
    assert settings.engine.device == "cpu"
    assert settings.engine_dtype == "float32"
    assert settings.engine_url == "http://127.0.0.1:8100"
    assert settings.policy.role_models == {"appliance-user": ["*"], "appliance-admin": ["*"]}


def test_database_url_defaults_to_sqlite_file_in_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "somewhere" / "data"
    settings = load_settings(write_yaml(tmp_path / "a.yaml", {"data_dir": str(data_dir)}))

    assert settings.database_url == f"sqlite:///{data_dir.resolve() / 'appliance.db'}"
    assert settings.model_store == data_dir / "models"
    assert settings.engine_model_dir == data_dir / "models" / "smollm2-135m-instruct"


def test_configured_database_url_wins_over_default() -> None:
    url = "postgresql+psycopg://app@db.internal/appliance"
    assert Settings(database={"url": url}).database_url == url


def test_effective_upstreams_default_to_local_engines() -> None:
    settings = Settings(engine={"port": 8123, "served_model_name": "m1"})

    assert settings.effective_upstreams() == [
        UpstreamSettings(model="m1", url="http://127.0.0.1:8123"),
        UpstreamSettings(model="smollm2-135m-embed", url="http://127.0.0.1:8101", kind="embedding"),
    ]


def test_effective_upstreams_prefer_configured_ones() -> None:
    settings = Settings(gateway={"upstreams": [{"model": "big", "url": "http://gpu-1:8000/"}]})

    assert settings.effective_upstreams() == [
        UpstreamSettings(model="big", url="http://gpu-1:8000")
    ]


def test_effective_upstreams_empty_when_engine_disabled_and_none_configured() -> None:
    assert Settings(engine={"enabled": False}).effective_upstreams() == []


@pytest.mark.parametrize(
    ("engine", "dtype"),
    [
        ({"device": "cpu"}, "float32"),
        ({"device": "gpu"}, "auto"),
        ({"device": "gpu", "dtype": "bfloat16"}, "bfloat16"),
        ({"device": "cpu", "dtype": "bfloat16"}, "bfloat16"),
    ],
)
def test_engine_dtype(engine: dict[str, str], dtype: str) -> None:
    assert Settings(engine=engine).engine_dtype == dtype


# -- YAML file and environment ----------------------------------------------------------


def test_load_settings_reads_yaml(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "appliance.yaml",
        {
            "data_dir": str(tmp_path / "d"),
            "engine": {"port": 9001, "device": "gpu"},
            "gateway": {"upstreams": [{"model": "m", "url": "https://engine.example"}]},
            "policy": {"role_models": {"team-a": ["llama-*"]}},
        },
    )

    settings = load_settings(path)

    assert settings.data_dir == tmp_path / "d"
    assert settings.engine.port == 9001
    assert settings.engine_dtype == "auto"
    assert settings.gateway.upstreams[0].url == "https://engine.example"
    assert settings.policy.role_models == {"team-a": ["llama-*"]}


def test_default_file_in_working_directory_is_read(tmp_path: Path) -> None:
    write_yaml(tmp_path / "appliance.yaml", {"gateway": {"port": 8555}})
    assert load_settings().gateway.port == 8555


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "elsewhere.yaml", {"gateway": {"port": 8556}})
    monkeypatch.setenv("APPLIANCE_CONFIG", str(path))
    assert load_settings().gateway.port == 8556


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_settings(path) == Settings()


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path / "a.yaml", {"engine": {"port": 9000, "host": "0.0.0.0"}})
    monkeypatch.setenv("APPLIANCE_ENGINE__PORT", "9100")

    settings = load_settings(path)

    assert settings.engine.port == 9100
    # The override is merged into the section, not replacing it.
    assert settings.engine.host == "0.0.0.0"


def test_environment_alone_configures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_GATEWAY__PORT", "8081")
    monkeypatch.setenv("APPLIANCE_ENGINE__DEVICE", "gpu")

    settings = load_settings()

    assert settings.gateway.port == 8081
    assert settings.engine_dtype == "auto"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    file_port=st.integers(min_value=1, max_value=65535),
    env_port=st.integers(min_value=1, max_value=65535),
)
def test_environment_always_wins(tmp_path: Path, file_port: int, env_port: int) -> None:
    path = write_yaml(tmp_path / "h.yaml", {"engine": {"port": file_port}})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("APPLIANCE_ENGINE__PORT", str(env_port))
        assert load_settings(path).engine.port == env_port
    assert load_settings(path).engine.port == file_port


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"engine": {"port": "abc"}}, "engine.port"),
        ({"engine": {"port": 70000}}, "engine.port"),
        ({"engine": {"device": "tpu"}}, "engine.device"),
        ({"gateway": {"max_body_bytes": 10}}, "gateway.max_body_bytes"),
        ({"gateway": {"upstreams": [{"model": "m", "url": "ftp://x"}]}}, "gateway.upstreams.0.url"),
        ({"engine": {"gpu_memory_utilization": 1.5}}, "engine.gpu_memory_utilization"),
    ],
)
def test_invalid_value_names_the_key(tmp_path: Path, data: dict[str, object], key: str) -> None:
    path = write_yaml(tmp_path / "bad.yaml", data)

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    assert f"{key}:" in caught.value.message
    assert str(path) in caught.value.message


def test_invalid_environment_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_ENGINE__PORT", "abc")

    with pytest.raises(ConfigurationError, match=r"engine\.port:"):
        load_settings()


def test_configuration_error_is_an_appliance_error_not_a_validation_error(
    tmp_path: Path,
) -> None:
    path = write_yaml(tmp_path / "bad.yaml", {"engine": {"port": "abc"}})
    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)
    # The pydantic error is chained for debugging, not exposed as the exception type.
    assert caught.value.__cause__ is not None
    assert "Traceback" not in caught.value.message


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"engine": {"colour": "red"}}, "engine.colour"),
        ({"gateway": {"upstreams": [{"model": "m", "url": "http://x", "w": 1}]}}, "upstreams.0.w"),
    ],
)
def test_unknown_key_is_rejected(tmp_path: Path, data: dict[str, object], key: str) -> None:
    path = write_yaml(tmp_path / "extra.yaml", data)

    with pytest.raises(ConfigurationError) as caught:
        load_settings(path)

    assert key in caught.value.message
    assert "Extra inputs are not permitted" in caught.value.message


def test_explicit_missing_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigurationError, match="not found") as caught:
        load_settings(missing)
    assert str(missing) in caught.value.message


def test_missing_file_from_environment_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APPLIANCE_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigurationError, match="not found"):
        load_settings()


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_map_raises(tmp_path: Path, text: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="top level must be a map"):
        load_settings(path)


def test_unparsable_yaml_raises(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("engine: {port: [\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="not YAML"):
        load_settings(path)


# -- masking ----------------------------------------------------------------------------


def test_masked_settings_hides_secrets(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path / "s.yaml",
        {
            "engine": {"api_key": "engine-shared-secret-123"},
            "auth": {"api_key_pepper": "pepper-secret-456"},
            "database": {"url": "postgresql+psycopg://app:db-password-789@db.internal/appl"},
        },
    )
    settings = load_settings(path)

    masked = masked_settings(settings)

    assert masked["engine"]["api_key"] == "**********"
    assert masked["auth"]["api_key_pepper"] == "**********"
    assert masked["database"]["url"] == "postgresql+psycopg://app:***@db.internal/appl"
    dumped = yaml.safe_dump(masked)
    for secret in ("engine-shared-secret-123", "pepper-secret-456", "db-password-789"):
        assert secret not in dumped
    # Masking is a view: the settings keep the real values.
    assert settings.engine.api_key is not None
    assert settings.engine.api_key.get_secret_value() == "engine-shared-secret-123"


def test_masked_settings_hides_secrets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_ENGINE__API_KEY", "env-secret-abc")
    masked = masked_settings(load_settings())
    assert masked["engine"]["api_key"] == "**********"
    assert "env-secret-abc" not in yaml.safe_dump(masked)


def test_masked_settings_shows_effective_database_url(tmp_path: Path) -> None:
    masked = masked_settings(load_settings())
    assert (
        masked["database"]["url"] == f"sqlite:///{(tmp_path / '.data' / 'appliance.db').resolve()}"
    )
    assert masked["engine"]["api_key"] is None
    assert masked["engine"]["port"] == 8100
