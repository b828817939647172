"""``embedding_engine:``: the local embedding engine beside the chat engine, and the
upstreams the gateway learns from the two."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appliance.config import Settings, UpstreamSettings, load_settings
from appliance.errors import ConfigurationError


def test_default_is_a_chat_and_an_embedding_upstream() -> None:
    settings = Settings()
    assert settings.embedding_engine_enabled
    assert settings.effective_upstreams() == [
        UpstreamSettings(model="smollm2-135m-instruct", url="http://127.0.0.1:8100"),
        UpstreamSettings(model="smollm2-135m-embed", url="http://127.0.0.1:8101", kind="embedding"),
    ]


def test_the_dev_model_is_its_default_weights(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.embedding_model_dir == tmp_path / "models" / "smollm2-135m-instruct"
    assert settings.embedding_engine_dtype == "float32"
    gpu = Settings(embedding_engine={"device": "gpu", "model_dir": str(tmp_path)})
    assert gpu.embedding_model_dir == tmp_path and gpu.embedding_engine_dtype == "auto"


def test_follows_the_chat_engine_unless_set() -> None:
    # A gateway-only configuration (Helm, Ansible) starts no local engine at all.
    assert Settings(engine={"enabled": False}).effective_upstreams() == []
    assert not Settings(engine={"enabled": False}).embedding_engine_enabled
    off = Settings(embedding_engine={"enabled": False})
    assert [u.kind for u in off.effective_upstreams()] == ["chat"]
    alone = Settings(engine={"enabled": False}, embedding_engine={"enabled": True})
    assert [u.kind for u in alone.effective_upstreams()] == ["embedding"]


def test_configured_upstreams_win() -> None:
    settings = Settings(gateway={"upstreams": [{"model": "m", "url": "http://10.0.0.1:8000"}]})
    assert [u.model for u in settings.effective_upstreams()] == ["m"]


def test_engine_tls_makes_both_https(tmp_path: Path) -> None:
    files = {name: str(tmp_path / name) for name in ("cert_file", "key_file", "ca_file")}
    settings = Settings(engine={"tls": files})
    assert {u.url.split(":")[0] for u in settings.effective_upstreams()} == {"https"}


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"port": 8100}, "embedding_engine.port: 8100 is the chat engine's port"),
        ({"served_model_name": "smollm2-135m-instruct"}, "serves smollm2-135m-instruct"),
        ({"cpu_threads_bind": "all"}, "cpu_threads_bind"),
        ({"pooling": "max"}, "pooling"),
    ],
    ids=["same-port", "same-name", "bad-binding", "bad-pooling"],
)
def test_refused_configurations(tmp_path: Path, section: dict[str, object], fragment: str) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump({"embedding_engine": section}))
    with pytest.raises(ConfigurationError) as refused:
        load_settings(path)
    assert fragment in str(refused.value)


def test_same_port_is_fine_when_one_engine_is_off() -> None:
    settings = Settings(embedding_engine={"port": 8100, "enabled": False})
    assert not settings.embedding_engine_enabled


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_EMBEDDING_ENGINE__ENABLED", "false")
    monkeypatch.setenv("APPLIANCE_EMBEDDING_ENGINE__PORT", "9101")
    settings = Settings()
    assert settings.embedding_engine.enabled is False
    assert settings.embedding_engine.port == 9101
