"""appliance/egress/sitefiles.py: loading a dictionary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.egress import Classification, load_dictionary
from appliance.errors import ConfigurationError


def test_load_dictionary(tmp_path: Path) -> None:
    path = tmp_path / "codenames.txt"
    path.write_text("\ufeff# code names\nFalcon\n\nBlue Harbor\n", encoding="utf-8")
    dictionary = load_dictionary(path, level="restricted")
    assert dictionary.name == "dictionary.codenames"
    assert dictionary.terms == ("Falcon", "Blue Harbor")
    assert dictionary.level is Classification.RESTRICTED
    named = load_dictionary(path, name="dictionary.projects", label="PROJECT")
    assert (named.name, named.label, named.level) == (
        "dictionary.projects",
        "PROJECT",
        Classification.CONFIDENTIAL,
    )


def test_load_dictionary_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.txt"):
        load_dictionary(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\n-dash\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"bad\.txt: line 2"):
        load_dictionary(bad)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigurationError, match=r"binary\.txt"):
        load_dictionary(binary)
    with pytest.raises(ConfigurationError, match="unknown classification"):
        load_dictionary(_ok(tmp_path), level="top-secret")


def _ok(tmp_path: Path) -> Path:
    path = tmp_path / "ok.txt"
    path.write_text("term\n", encoding="utf-8")
    return path
