"""Bring weights into the model store on an air-gapped site: copy (or hard-link)
from a staging directory, check sizes and sha256 against the expected manifest, and
resume where an interrupted import stopped. Nothing here talks to a hub.

Where the expected digests come from, in order: the model profile's manifest; a
``MANIFEST.sha256`` in the source (``sha256sum`` run on the connected staging host);
or, with ``trust_source``, whatever the source holds now (recorded as the manifest).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ManifestError
from appliance.modelstore.manifest import (
    MANIFEST_NAME,
    format_manifest,
    parse_manifest,
    verify_manifest,
)

__all__ = [
    "ExpectedFile",
    "ImportResult",
    "ProgressCallback",
    "import_model",
    "partial_dir",
    "verify_against",
]

ProgressCallback = Callable[[str, int, int], None]  # file name, bytes done, bytes total
_CHUNK = 8 << 20
_STATE_NAME = ".import-state.json"


@dataclass(frozen=True)
class ExpectedFile:
    name: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class ImportResult:
    destination: Path
    files: int
    bytes: int
    resumed_files: int
    skipped: tuple[str, ...]
    manifest_source: str


def partial_dir(destination: Path) -> Path:
    return destination.parent / f".partial-{destination.name}"


def _source_files(source: Path) -> dict[str, Path]:
    """Regular files under ``source``, hidden paths (``.cache/``, ``.git*``) left out."""
    files: dict[str, Path] = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part.startswith(".") for part in relative.parts) or path.name == MANIFEST_NAME:
            continue
        if path.is_file():
            files[relative.as_posix()] = path
    return files


def _expected(
    source: Path, files: Mapping[str, Path], expected: Mapping[str, ExpectedFile] | None,
    trust_source: bool,
) -> tuple[dict[str, ExpectedFile | None], str]:  # fmt: skip
    if expected:
        return dict(expected), "profile manifest"
    listed = source / MANIFEST_NAME
    if listed.is_file():
        parsed = parse_manifest(listed.read_text(encoding="utf-8"))
        return {name: ExpectedFile(name, digest) for name, digest in parsed.items()}, (
            f"{MANIFEST_NAME} from the source"
        )
    if trust_source:
        return dict.fromkeys(files), "recorded from the source (--trust-source)"
    raise ManifestError(
        f"no expected manifest: the profile lists none and {source} has no {MANIFEST_NAME}; "
        f"create one on the staging host (sha256sum) or pass --trust-source to record one"
    )


def _hash_prefix(path: Path) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest, size


def _copy_file(source: Path, target: Path, on_bytes: Callable[[int], None]) -> str:
    """Copy with a running sha256, continuing a ``.part`` file left by an earlier run."""
    part = target.with_name(target.name + ".part")
    digest, done = _hash_prefix(part) if part.exists() else (hashlib.sha256(), 0)
    if done > source.stat().st_size:
        part.unlink()
        digest, done = hashlib.sha256(), 0
    on_bytes(done)
    with source.open("rb") as reader, part.open("ab") as writer:
        reader.seek(done)
        while chunk := reader.read(_CHUNK):
            writer.write(chunk)
            digest.update(chunk)
            on_bytes(len(chunk))
        writer.flush()
        os.fsync(writer.fileno())
    part.rename(target)
    return digest.hexdigest()


def _link_file(source: Path, target: Path, on_bytes: Callable[[int], None]) -> str | None:
    """Hard-link and hash; None when the store is on another file system."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            return None
        raise
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            on_bytes(len(chunk))
    return digest.hexdigest()


def _load_state(work: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads((work / _STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_state(work: Path, state: Mapping[str, object]) -> None:
    temporary = work / (_STATE_NAME + ".tmp")
    temporary.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
    temporary.replace(work / _STATE_NAME)


def import_model(
    source: Path,
    destination: Path,
    *,
    expected: Mapping[str, ExpectedFile] | None = None,
    trust_source: bool = False,
    link: bool = False,
    on_progress: ProgressCallback = lambda _name, _done, _total: None,
) -> ImportResult:
    """Import ``source`` into ``destination`` (``<store>/<name>``) and write its
    ``MANIFEST.sha256``. Raises ManifestError on a missing file, a size or sha256
    mismatch; a rerun resumes from the files (and bytes) already imported."""
    if not source.is_dir():
        raise ManifestError(f"source {source} is not a directory")
    if (destination / MANIFEST_NAME).exists():
        raise ManifestError(
            f"{destination} already holds an imported model; check it with `models verify`"
        )
    files = _source_files(source)
    wanted, manifest_source = _expected(source, files, expected, trust_source)
    missing = sorted(set(wanted) - set(files))
    if missing:
        raise ManifestError(
            f"{source} lacks {len(missing)} expected files: {', '.join(missing[:5])}"
        )
    for name, entry in wanted.items():  # 1. sizes first: cheap, catches truncated copies
        if (
            entry is not None
            and entry.size is not None
            and files[name].stat().st_size != entry.size
        ):
            raise ManifestError(
                f"size mismatch: {name} is {files[name].stat().st_size} bytes, "
                f"expected {entry.size}"
            )
    skipped = tuple(sorted(set(files) - set(wanted)))
    total = sum(files[name].stat().st_size for name in wanted)
    work = partial_dir(destination)
    work.mkdir(parents=True, exist_ok=True)
    state = _load_state(work)
    done = 0
    resumed = 0
    digests: dict[str, str] = {}

    def advance(name: str) -> Callable[[int], None]:
        def on_bytes(count: int) -> None:
            nonlocal done
            done += count
            on_progress(name, done, total)

        return on_bytes

    for name in sorted(wanted):  # 2. copy with a running sha256, file by file
        origin, target = files[name], work / name
        size = origin.stat().st_size
        recorded = state.get(name)
        if (
            isinstance(recorded, dict) and target.is_file()
            and target.stat().st_size == size and recorded.get("size") == size
        ):  # fmt: skip
            digests[name] = str(recorded["sha256"])
            resumed += 1
            advance(name)(size)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            digest = _link_file(origin, target, advance(name)) if link else None
            digests[name] = digest or _copy_file(origin, target, advance(name))
        entry = wanted[name]  # 3. compare with the expected digest
        if entry is not None and not hmac.compare_digest(digests[name], entry.sha256):
            target.unlink(missing_ok=True)
            state.pop(name, None)
            _save_state(work, state)
            raise ManifestError(f"sha256 mismatch: {name} (source {origin}); refusing to import")
        state[name] = {"size": size, "sha256": digests[name]}
        _save_state(work, state)
    # 4. the manifest, then the directory into place in one rename
    (work / MANIFEST_NAME).write_text(format_manifest(digests), encoding="utf-8")
    (work / _STATE_NAME).unlink(missing_ok=True)
    if destination.exists():
        shutil.rmtree(destination)  # an empty or stray directory without a manifest
    work.rename(destination)
    return ImportResult(
        destination=destination,
        files=len(digests),
        bytes=total,
        resumed_files=resumed,
        skipped=skipped,
        manifest_source=manifest_source,
    )


def verify_against(
    directory: Path,
    expected: Mapping[str, ExpectedFile] | None = None,
    *,
    on_file: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Verify ``directory`` against its own manifest, and that manifest against the
    profile's expected files (when the profile lists any)."""
    entries = verify_manifest(directory, on_file=on_file)
    for name, entry in (expected or {}).items():
        recorded = entries.get(name)
        if recorded is None:
            raise ManifestError(f"{directory}: {name} from the profile manifest is missing")
        if not hmac.compare_digest(recorded, entry.sha256):
            raise ManifestError(f"{directory}: {name} differs from the profile manifest")
        if entry.size is not None and (directory / name).stat().st_size != entry.size:
            raise ManifestError(f"{directory}: {name} has the wrong size")
    return entries
