"""appliance/keys/files.py: secrets generated once and kept in the data directory."""

from __future__ import annotations

import stat
from pathlib import Path

from appliance.keys.files import load_or_create_secret


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_call_creates_a_private_secret_file(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "engine_api_key"
    value = load_or_create_secret(path)
    assert path.read_text(encoding="ascii") == value + "\n"
    assert _mode(path) == 0o600
    assert _mode(path.parent) & 0o077 == 0, "the secrets directory is readable by others"


def test_second_call_returns_the_same_secret(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "pepper"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first
    assert _mode(path) == 0o600


def test_secrets_are_random_and_long(tmp_path: Path) -> None:
    values = {load_or_create_secret(tmp_path / f"s{i}") for i in range(5)}
    assert len(values) == 5
    assert all(len(value) >= 43 for value in values)  # 32 random bytes, base64url


def test_nbytes_sets_the_strength(tmp_path: Path) -> None:
    assert len(load_or_create_secret(tmp_path / "short", nbytes=16)) == 22
    assert len(load_or_create_secret(tmp_path / "long", nbytes=64)) == 86


def test_an_existing_secret_is_read_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "engine_api_key"
    path.write_text("provisioned-by-the-admin\n", encoding="ascii")
    assert load_or_create_secret(path) == "provisioned-by-the-admin"
    assert path.read_text(encoding="ascii") == "provisioned-by-the-admin\n"


def test_an_empty_secret_file_never_yields_an_empty_secret(tmp_path: Path) -> None:
    path = tmp_path / "engine_api_key"
    path.touch(mode=0o600)
    assert load_or_create_secret(path) != ""
