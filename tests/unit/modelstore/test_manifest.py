"""appliance/modelstore/manifest.py: sha256sum-format manifests of model directories."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import ManifestError
from appliance.modelstore.manifest import (
    MANIFEST_NAME,
    compute_manifest,
    format_manifest,
    parse_manifest,
    sha256_file,
    verify_manifest,
    write_manifest,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
# FIPS 180-2, appendix B.1: SHA-256("abc").
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
DIGEST_A = "a" * 64
DIGEST_B = "0123456789abcdef" * 4


@pytest.fixture
def sha256_vectors() -> Path:
    """tests/vectors/sha256: abc.txt holds exactly b"abc", listed in its manifest."""
    return VECTORS / "sha256"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    (directory / "tokenizer").mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama"}\n')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (directory / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}\n')
    return directory


# -- the published vector ---------------------------------------------------------------


def test_vector_file_hashes_to_the_published_digest(sha256_vectors: Path) -> None:
    assert (sha256_vectors / "abc.txt").read_bytes() == b"abc"
    assert sha256_file(sha256_vectors / "abc.txt") == ABC_SHA256


def test_verify_manifest_accepts_the_published_vector(sha256_vectors: Path) -> None:
    assert verify_manifest(sha256_vectors) == {"abc.txt": ABC_SHA256}


# -- format / parse -----------------------------------------------------------------------


def test_format_manifest_is_sha256sum_format_sorted_by_name() -> None:
    text = format_manifest({"b/x.bin": DIGEST_B, "a.json": DIGEST_A})
    assert text == f"{DIGEST_A}  a.json\n{DIGEST_B}  b/x.bin\n"


def test_format_of_nothing_is_empty_and_parses_back() -> None:
    assert format_manifest({}) == ""
    assert parse_manifest("") == {}


def test_parse_manifest_round_trips_an_example() -> None:
    entries = {"config.json": DIGEST_A, "tokenizer/tokenizer.json": DIGEST_B, "a  b": DIGEST_A}
    assert parse_manifest(format_manifest(entries)) == entries


def test_parse_manifest_skips_blank_lines() -> None:
    assert parse_manifest(f"\n{DIGEST_A}  a\n   \n{DIGEST_B}  b\n\n") == {
        "a": DIGEST_A,
        "b": DIGEST_B,
    }


def test_parse_manifest_reads_sha256sum_output(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01\x02")
    digest = hashlib.sha256(b"\x00\x01\x02").hexdigest()
    assert parse_manifest(f"{digest}  weights.bin\n") == {"weights.bin": digest}


@pytest.mark.parametrize(
    "line",
    [
        "not a manifest line",
        f"{DIGEST_A} single-space.bin",
        f"{DIGEST_A}\tweights.bin",
        f"{DIGEST_A[:-1]}  short.bin",
        f"{DIGEST_A}0  long.bin",
        f"{'g' * 64}  not-hex.bin",
        f"{DIGEST_A}  ",
    ],
    ids=["prose", "one-space", "tab", "short-digest", "long-digest", "not-hex", "no-name"],
)
def test_parse_manifest_rejects_malformed_lines(line: str) -> None:
    with pytest.raises(ManifestError, match=re.escape("manifest line 2")):
        parse_manifest(f"{DIGEST_B}  ok.bin\n{line}\n")


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../outside.bin", "sub/../../outside.bin", "sub/.."]
)
def test_parse_manifest_rejects_paths_outside_the_model(name: str) -> None:
    with pytest.raises(ManifestError, match=re.escape("line 1 names a path outside the model")):
        parse_manifest(f"{DIGEST_A}  {name}\n")


def test_parse_manifest_rejects_duplicates() -> None:
    with pytest.raises(ManifestError, match=re.escape("line 2 repeats weights.bin")):
        parse_manifest(f"{DIGEST_A}  weights.bin\n{DIGEST_B}  weights.bin\n")


# Names a model directory can hold that fit on one manifest line: no line breaks (which
# str.splitlines() also finds in \x0b, \x1c, \x85, \u2028, ...), no "." or ".." parts.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_segment = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/" + _LINE_BREAKS),
    min_size=1,
    max_size=12,
).filter(lambda part: part not in (".", ".."))
_names = st.lists(_segment, min_size=1, max_size=4).map("/".join)
_digests = st.text("0123456789abcdef", min_size=64, max_size=64)


@given(st.dictionaries(_names, _digests, max_size=20))
def test_parse_inverts_format(entries: dict[str, str]) -> None:
    assert parse_manifest(format_manifest(entries)) == entries


@given(st.dictionaries(_names, _digests, max_size=20))
def test_format_is_canonical(entries: dict[str, str]) -> None:
    text = format_manifest(entries)
    assert format_manifest(parse_manifest(text)) == text


# -- write / verify ---------------------------------------------------------------------


def test_write_then_verify(model_dir: Path) -> None:
    target = write_manifest(model_dir)
    assert target == model_dir / MANIFEST_NAME
    expected = {
        "config.json": sha256_file(model_dir / "config.json"),
        "model.safetensors": sha256_file(model_dir / "model.safetensors"),
        "tokenizer/tokenizer.json": sha256_file(model_dir / "tokenizer" / "tokenizer.json"),
    }
    assert parse_manifest(target.read_text()) == expected
    assert compute_manifest(model_dir) == expected
    assert verify_manifest(model_dir) == expected


def test_verify_reports_each_file_it_checks(model_dir: Path) -> None:
    write_manifest(model_dir)
    seen: list[str] = []
    verify_manifest(model_dir, on_file=seen.append)
    assert seen == ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]


def test_manifest_does_not_list_itself(model_dir: Path) -> None:
    write_manifest(model_dir)
    write_manifest(model_dir)  # a second run must not pick up the first manifest
    assert MANIFEST_NAME not in parse_manifest((model_dir / MANIFEST_NAME).read_text())
    verify_manifest(model_dir)


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 * 4096 + 17)  # more than one 1 MiB chunk
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_verify_rejects_a_changed_byte(model_dir: Path) -> None:
    write_manifest(model_dir)
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=re.escape("sha256 mismatch: model.safetensors")):
        verify_manifest(model_dir)


def test_verify_rejects_a_changed_nested_file(model_dir: Path) -> None:
    write_manifest(model_dir)
    (model_dir / "tokenizer" / "tokenizer.json").write_text('{"version": "1.1"}\n')
    with pytest.raises(ManifestError, match=re.escape("sha256 mismatch: tokenizer/tokenizer.json")):
        verify_manifest(model_dir)


def test_verify_rejects_a_missing_file(model_dir: Path) -> None:
    write_manifest(model_dir)
    (model_dir / "config.json").unlink()
    with pytest.raises(ManifestError, match=re.escape("missing: config.json")):
        verify_manifest(model_dir)


def test_verify_rejects_an_extra_file(model_dir: Path) -> None:
    write_manifest(model_dir)
    (model_dir / "tokenizer" / "added.py").write_text("import os\n")
    with pytest.raises(ManifestError, match=re.escape("not in manifest: tokenizer/added.py")):
        verify_manifest(model_dir)


def test_verify_rejects_a_directory_without_manifest(model_dir: Path) -> None:
    with pytest.raises(ManifestError, match=re.escape(f"has no {MANIFEST_NAME}")) as caught:
        verify_manifest(model_dir)
    assert str(model_dir) in str(caught.value)


def test_verify_rejects_a_malformed_manifest(model_dir: Path) -> None:
    (model_dir / MANIFEST_NAME).write_text(f"{DIGEST_A}  ../../etc/passwd\n")
    with pytest.raises(ManifestError, match=re.escape("outside the model")):
        verify_manifest(model_dir)


def test_verify_names_every_problem(model_dir: Path) -> None:
    write_manifest(model_dir)
    (model_dir / "config.json").unlink()
    (model_dir / "extra.bin").write_bytes(b"x")
    (model_dir / "model.safetensors").write_bytes(b"y")
    with pytest.raises(ManifestError) as caught:
        verify_manifest(model_dir)
    message = str(caught.value)
    assert "missing: config.json" in message
    assert "not in manifest: extra.bin" in message
    assert "sha256 mismatch: model.safetensors" in message


@settings(max_examples=25, deadline=None)
@given(
    files=st.dictionaries(
        st.sampled_from(["a.bin", "b.json", "sub/c.bin", "sub/deeper/d.txt"]),
        st.binary(min_size=1, max_size=64),
        min_size=1,
    ),
    data=st.data(),
)
def test_verify_detects_any_single_byte_change(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as raw:
        directory = Path(raw)
        for name, content in files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(content)
        write_manifest(directory)
        verify_manifest(directory)

        name = data.draw(st.sampled_from(sorted(files)))
        content = bytearray(files[name])
        index = data.draw(st.integers(0, len(content) - 1))
        content[index] ^= data.draw(st.integers(1, 255))
        (directory / name).write_bytes(bytes(content))
        with pytest.raises(ManifestError, match=re.escape(f"sha256 mismatch: {name}")):
            verify_manifest(directory)


@pytest.mark.parametrize("name", ["line\nbreak.bin", "next\x85line.bin", "sep\u2028.bin"])
def test_file_names_with_line_breaks_are_refused_when_writing(tmp_path: Path, name: str) -> None:
    # A name with a line break cannot be one manifest line; writing fails closed.
    (tmp_path / name).write_bytes(b"weights")
    with pytest.raises(ManifestError, match="line break"):
        write_manifest(tmp_path)
