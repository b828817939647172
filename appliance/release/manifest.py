"""The signed ``MANIFEST`` of a release bundle, and the release key pair.

The manifest is a C2SP signed note (the format of the audit log's checkpoints) whose
body lists ``sha256 size path`` for every file of the bundle; the standalone
:mod:`~appliance.release.release_verifier` checks it with nothing but ``cryptography``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from appliance.audit.checkpoint import NoteSigner, sign_note
from appliance.errors import BundleError, VerificationError
from appliance.release.release_verifier import (
    FORMAT_LINE,
    MANIFEST_NAME,
    Listing,
    bundle_files,
    file_digest,
)

__all__ = [
    "DEFAULT_KEY_NAME",
    "generate_release_key",
    "list_files",
    "load_release_signer",
    "manifest_body",
    "write_manifest",
]

DEFAULT_KEY_NAME = "appliance-release"


def list_files(root: Path, progress: Callable[[str, int], None] | None = None) -> Listing:
    """SHA-256 and size of every file under ``root`` but ``MANIFEST``."""
    listing: Listing = {}
    done = 0
    for path in bundle_files(root):
        if path == MANIFEST_NAME:
            continue
        listing[path] = file_digest(root / path, progress, done)
        done += listing[path][1]
    return listing


def manifest_body(listing: Listing, comments: list[str]) -> str:
    """The note text: the format line, ``# `` comments, then one line per file."""
    for comment in comments:
        if "\n" in comment or any(ord(c) < 0x20 for c in comment):
            raise BundleError(f"a manifest comment cannot hold control characters: {comment!r}")
    lines = [FORMAT_LINE, *(f"# {comment}" for comment in comments)]
    for path in sorted(listing):
        if any(ord(c) < 0x20 for c in path) or path != path.strip():
            raise BundleError(f"cannot list a file whose name has control characters: {path!r}")
        digest, size = listing[path]
        lines.append(f"{digest} {size} {path}")
    return "\n".join(lines) + "\n"


def write_manifest(
    root: Path,
    signer: NoteSigner,
    comments: list[str],
    progress: Callable[[str, int], None] | None = None,
) -> Listing:
    """Hash every file under ``root`` and write the signed ``MANIFEST``."""
    listing = list_files(root, progress)
    note = sign_note(manifest_body(listing, comments), signer)
    (root / MANIFEST_NAME).write_text(note, encoding="utf-8")
    return listing


def generate_release_key(directory: Path, name: str = DEFAULT_KEY_NAME) -> tuple[Path, Path]:
    """Write ``release.key`` (private, mode 0600) and ``release.pub``; never overwrite."""
    private, public = directory / "release.key", directory / "release.pub"
    for path in (private, public):
        if path.exists():
            raise BundleError(f"{path} exists; move it away first (a release key is kept)")
    try:
        signer = NoteSigner.generate(name)
    except ValueError as exc:
        raise BundleError(f"invalid key name {name!r}: no spaces or '+'") from exc
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(signer.signer_key() + "\n")
    public.write_text(signer.verifier().verifier_key() + "\n", encoding="utf-8")
    return private, public


def load_release_signer(path: Path) -> NoteSigner:
    try:
        return NoteSigner.from_signer_key(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleError(f"cannot read the release key {path}: {exc.strerror}") from exc
    except VerificationError as exc:
        raise BundleError(f"{path} is not a release signing key: {exc.message}") from exc
