"""appliance/modelstore/importer.py: air-gapped import with sizes, sha256, resume."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from appliance.errors import ManifestError
from appliance.modelstore import MANIFEST_NAME, verify_manifest
from appliance.modelstore.importer import (
    ExpectedFile,
    import_model,
    partial_dir,
    verify_against,
)

FILES = {
    "config.json": b'{"architectures": ["X"]}',
    "model-00001-of-00002.safetensors": b"a" * 3000,
    "model-00002-of-00002.safetensors": b"b" * 5000,
    "sub/tokenizer.json": b"{}",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "staging"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / ".cache").mkdir()
    (root / ".cache" / "junk").write_text("hub cache")
    return root


def _expected() -> dict[str, ExpectedFile]:
    return {n: ExpectedFile(n, _sha(d), len(d)) for n, d in FILES.items()}


def test_import_against_expected_manifest(source: Path, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    destination = tmp_path / "store" / "m"
    result = import_model(source, destination, expected=_expected(),
                          on_progress=lambda *a: seen.append(a))  # fmt: skip
    assert result.files == 4 and result.bytes == sum(map(len, FILES.values()))
    assert result.manifest_source == "profile manifest"
    assert verify_manifest(destination) == {n: _sha(d) for n, d in FILES.items()}
    assert seen[-1][1] == seen[-1][2] == result.bytes  # the bar ends full
    assert not partial_dir(destination).exists()
    assert not (destination / ".cache").exists()


def test_size_mismatch_fails_before_copying(source: Path, tmp_path: Path) -> None:
    expected = _expected()
    name = "model-00002-of-00002.safetensors"
    expected[name] = ExpectedFile(name, expected[name].sha256, 4999)
    with pytest.raises(ManifestError, match="size mismatch"):
        import_model(source, tmp_path / "store" / "m", expected=expected)
    assert not partial_dir(tmp_path / "store" / "m").exists()


def test_sha_mismatch_is_refused(source: Path, tmp_path: Path) -> None:
    (source / "model-00001-of-00002.safetensors").write_bytes(b"x" * 3000)  # same size
    destination = tmp_path / "store" / "m"
    with pytest.raises(ManifestError, match="sha256 mismatch: model-00001"):
        import_model(source, destination, expected=_expected())
    assert not destination.exists()


def test_missing_file_is_named(source: Path, tmp_path: Path) -> None:
    (source / "sub" / "tokenizer.json").unlink()
    with pytest.raises(ManifestError, match=r"lacks 1 expected files: sub/tokenizer.json"):
        import_model(source, tmp_path / "store" / "m", expected=_expected())


def test_source_manifest_from_the_staging_host(source: Path, tmp_path: Path) -> None:
    (source / MANIFEST_NAME).write_text(
        "".join(f"{_sha(d)}  {n}\n" for n, d in FILES.items() if n != "sub/tokenizer.json")
    )
    result = import_model(source, tmp_path / "store" / "m")
    assert result.manifest_source.startswith(MANIFEST_NAME)
    assert result.skipped == ("sub/tokenizer.json",)
    assert result.files == 3


def test_no_manifest_needs_trust_source(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="--trust-source"):
        import_model(source, tmp_path / "store" / "m")
    result = import_model(source, tmp_path / "store" / "m", trust_source=True)
    assert "--trust-source" in result.manifest_source
    assert verify_manifest(tmp_path / "store" / "m")


def test_resume_continues_files_and_bytes(source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "store" / "m"
    calls = 0

    def interrupt(name: str, done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if name.startswith("model-00002") and done > 3100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_model(source, destination, expected=_expected(), on_progress=interrupt)
    work = partial_dir(destination)
    assert (work / "config.json").is_file()  # finished before the interruption
    # A half-written .part file resumes from its bytes.
    (work / "model-00002-of-00002.safetensors.part").write_bytes(b"b" * 1234)
    result = import_model(source, destination, expected=_expected())
    assert result.resumed_files >= 2
    assert verify_manifest(destination)


def test_link_mode_and_existing_destination(source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "store" / "m"
    import_model(source, destination, expected=_expected(), link=True)
    shard = destination / "model-00001-of-00002.safetensors"
    assert shard.stat().st_ino == (source / "model-00001-of-00002.safetensors").stat().st_ino
    with pytest.raises(ManifestError, match="already holds"):
        import_model(source, destination, expected=_expected())


def test_verify_against_profile_manifest(source: Path, tmp_path: Path) -> None:
    destination = tmp_path / "store" / "m"
    import_model(source, destination, trust_source=True)
    assert len(verify_against(destination, _expected())) == 4
    wrong = {"config.json": ExpectedFile("config.json", "0" * 64)}
    with pytest.raises(ManifestError, match="differs from the profile"):
        verify_against(destination, wrong)
    (destination / "config.json").write_text("tampered")
    with pytest.raises(ManifestError, match=r"sha256 mismatch: config\.json"):
        verify_against(destination)


def test_source_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not a directory"):
        import_model(tmp_path / "nope", tmp_path / "store" / "m")
