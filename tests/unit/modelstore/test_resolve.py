"""appliance/modelstore/resolve.py: the engine's model directory, ready and verified."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.errors import ManifestError
from appliance.modelstore import resolve
from appliance.modelstore.manifest import write_manifest
from appliance.modelstore.resolve import ready_engine_model


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read APPLIANCE_* from the environment; keep the developer's out."""
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def configured_model(tmp_path: Path) -> Path:
    directory = tmp_path / "models" / "mine"
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama"}\n')
    (directory / "model.safetensors").write_bytes(b"\x01\x02\x03" * 100)
    write_manifest(directory)
    return directory


@pytest.fixture
def no_dev_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def prepare(destination: Path, **_: object) -> Path:
        raise AssertionError(f"prepare_dev_model({destination}) called for a configured model")

    monkeypatch.setattr(resolve, "prepare_dev_model", prepare)


@pytest.mark.usefixtures("no_dev_model")
def test_configured_model_is_verified_not_prepared(tmp_path: Path, configured_model: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", engine={"model_dir": configured_model})
    messages: list[str] = []
    assert ready_engine_model(settings, progress=messages.append) == configured_model
    assert "verifying config.json" in messages
    assert "verifying model.safetensors" in messages


@pytest.mark.usefixtures("no_dev_model")
def test_tampered_configured_model_is_refused(tmp_path: Path, configured_model: Path) -> None:
    (configured_model / "model.safetensors").write_bytes(b"\x01\x02\x04" * 100)
    settings = Settings(data_dir=tmp_path / "data", engine={"model_dir": configured_model})
    with pytest.raises(ManifestError, match=re.escape("sha256 mismatch: model.safetensors")):
        ready_engine_model(settings)


@pytest.mark.usefixtures("no_dev_model")
def test_configured_model_without_manifest_is_refused(
    tmp_path: Path, configured_model: Path
) -> None:
    (configured_model / "MANIFEST.sha256").unlink()
    settings = Settings(data_dir=tmp_path / "data", engine={"model_dir": configured_model})
    with pytest.raises(ManifestError, match=re.escape("no MANIFEST.sha256")):
        ready_engine_model(settings)


def test_default_model_is_prepared_then_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[Path] = []

    def prepare(destination: Path, **_: object) -> Path:
        prepared.append(destination)
        destination.mkdir(parents=True)
        (destination / "config.json").write_text("{}\n")
        write_manifest(destination)
        return destination

    monkeypatch.setattr(resolve, "prepare_dev_model", prepare)
    settings = Settings(data_dir=tmp_path / "data")
    expected = tmp_path / "data" / "models" / "smollm2-135m-instruct"
    assert ready_engine_model(settings) == expected
    assert prepared == [expected]


def test_default_model_tampered_after_preparation_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def prepare(destination: Path, **_: object) -> Path:
        destination.mkdir(parents=True)
        (destination / "config.json").write_text("{}\n")
        write_manifest(destination)
        (destination / "config.json").write_text('{"tampered": true}\n')
        return destination

    monkeypatch.setattr(resolve, "prepare_dev_model", prepare)
    with pytest.raises(ManifestError, match=re.escape("sha256 mismatch: config.json")):
        ready_engine_model(Settings(data_dir=tmp_path / "data"))
