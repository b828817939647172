"""sha256 manifests of model directories, in ``sha256sum`` format so an admin can
check one with ``sha256sum -c MANIFEST.sha256`` from inside the directory."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from pathlib import Path

from appliance.errors import ManifestError

__all__ = [
    "MANIFEST_NAME",
    "compute_manifest",
    "format_manifest",
    "parse_manifest",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
]

MANIFEST_NAME = "MANIFEST.sha256"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def format_manifest(entries: Mapping[str, str]) -> str:
    for name in entries:
        if len(name.splitlines()) != 1:
            raise ManifestError(f"file name {name!r} contains a line break; rename it")
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))


def parse_manifest(text: str) -> dict[str, str]:
    """Parse ``<64 hex>  <relative path>`` lines; reject anything else."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ManifestError(f"manifest line {number} is not '<sha256>  <file>'")
        if name.startswith("/") or ".." in Path(name).parts or not name:
            raise ManifestError(f"manifest line {number} names a path outside the model")
        if name in entries:
            raise ManifestError(f"manifest line {number} repeats {name}")
        entries[name] = digest
    return entries


def _model_files(directory: Path) -> list[Path]:
    return sorted(
        path for path in directory.rglob("*") if path.is_file() and path.name != MANIFEST_NAME
    )


def compute_manifest(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): sha256_file(path)
        for path in _model_files(directory)
    }


def write_manifest(directory: Path) -> Path:
    target = directory / MANIFEST_NAME
    target.write_text(format_manifest(compute_manifest(directory)), encoding="utf-8")
    return target


def verify_manifest(
    directory: Path, *, on_file: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Check every file against the manifest; raise ManifestError naming the first
    problems (missing, changed or unlisted files)."""
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST_NAME}; refusing to serve it")
    expected = parse_manifest(manifest_path.read_text(encoding="utf-8"))
    present = {path.relative_to(directory).as_posix() for path in _model_files(directory)}
    problems = [f"missing: {name}" for name in sorted(set(expected) - present)]
    problems += [f"not in manifest: {name}" for name in sorted(present - set(expected))]
    for name in sorted(set(expected) & present):
        if on_file is not None:
            on_file(name)
        if not hmac.compare_digest(sha256_file(directory / name), expected[name]):
            problems.append(f"sha256 mismatch: {name}")
    if problems:
        raise ManifestError(f"{directory} does not match its manifest: " + "; ".join(problems[:5]))
    return expected
