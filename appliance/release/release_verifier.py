#!/usr/bin/env python3
"""Standalone verifier for an appliance release bundle (`appliance bundle create`).

Needs only Python 3.9+ and the `cryptography` package; it imports nothing from the
appliance, so a security team can read all of it and run it on the air-gapped side
before anything from the bundle is installed. A copy travels in every bundle as
``verify_bundle.py``:

    python3 verify_bundle.py BUNDLE_DIR --key release.pub

``--key`` is the release public key (a C2SP signed-note verifier key,
``<name>+<key id>+<base64>``) as obtained independently of the bundle: a file holding
it, or the key text. Exit status 0: every check passed; 1: a check failed, and the
message names the first cause.

Checks:
1. the key parses as an Ed25519 signed-note verifier key whose id matches its bytes
   (C2SP signed-note);
2. ``MANIFEST`` is a signed note with a valid Ed25519 signature by that key;
   signatures by other keys are ignored, so a bundle signed only by another key fails;
3. the manifest body starts with the format line and lists ``sha256 size path``, one
   file per line, paths relative and inside the bundle, sorted, no repeats;
4. every listed file exists (else: missing), has the listed size and SHA-256 (else:
   altered);
5. every file in the bundle is listed, ``MANIFEST`` aside (else: unlisted). Symbolic
   links and special files are refused.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import os
import sys
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT_LINE = "appliance-release-bundle/v1"
MANIFEST_NAME = "MANIFEST"
_DASH = "\u2014 "
_CHUNK = 1 << 20

Listing = dict[str, tuple[str, int]]  # path -> (sha256 hex, size)
# Progress callbacks get (path, bytes hashed so far in total); annotations only (lazy
# under `from __future__ import annotations`, so Python 3.9 reads them too).


class BundleVerificationError(Exception):
    """A check failed; the message names the first cause."""


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleVerificationError("malformed base64 in the key or the signature") from exc


def parse_verifier_key(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    """Step 1: ``<name>+<hex key id>+base64(0x01 || public key)``."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise BundleVerificationError("malformed release public key")
    name, hex_id, encoded = parts
    raw = _b64(encoded)
    if len(raw) != 33 or raw[0] != 0x01:
        raise BundleVerificationError("the release public key is not an Ed25519 key")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != hex_id.lower():
        raise BundleVerificationError("the release public key's id does not match the key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_manifest(message: str, key: tuple[str, bytes, Ed25519PublicKey]) -> str:
    """Step 2: the manifest body, if ``key`` signed it."""
    name, key_id, public = key
    body, sep, block = message.rpartition("\n\n")
    if not sep or not block.endswith("\n"):
        raise BundleVerificationError("MANIFEST is not a signed note (no signature block)")
    body += "\n"
    signed_by_key = False
    for line in block[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise BundleVerificationError("MANIFEST has a malformed signature line")
        signer, _, encoded = line[len(_DASH) :].partition(" ")
        raw = _b64(encoded)
        if signer != name or not hmac.compare_digest(raw[:4], key_id):
            continue  # signed-note: signatures by unknown keys are ignored
        try:
            public.verify(raw[4:], body.encode("utf-8"))
        except InvalidSignature as exc:
            raise BundleVerificationError(
                f"the MANIFEST signature by {name} is wrong: the manifest was altered after signing"
            ) from exc
        signed_by_key = True
    if not signed_by_key:
        raise BundleVerificationError(
            f"MANIFEST is not signed by the release key {name}+{key_id.hex()} "
            "(signed by another key, or not at all)"
        )
    return body


def _safe_path(text: str) -> str:
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or str(path) != text or text in ("", "."):
        raise BundleVerificationError(f"MANIFEST lists an unsafe path: {text!r}")
    if text == MANIFEST_NAME:
        raise BundleVerificationError("MANIFEST lists itself")
    return text


def parse_listing(body: str) -> Listing:
    """Step 3: the files the manifest lists."""
    lines = body.rstrip("\n").split("\n")
    if not lines or lines[0] != FORMAT_LINE:
        raise BundleVerificationError(f"MANIFEST does not start with {FORMAT_LINE!r}")
    listing: Listing = {}
    previous = ""
    for line in lines[1:]:
        if line.startswith("#"):  # comments: release name, target platform
            continue
        parts = line.split(" ", 2)
        if len(parts) != 3 or len(parts[0]) != 64 or not parts[1].isdigit():
            raise BundleVerificationError(f"MANIFEST has a malformed line: {line[:80]!r}")
        digest, size, path = parts
        path = _safe_path(path)
        if path in listing or path <= previous:
            raise BundleVerificationError(f"MANIFEST is not sorted or repeats {path}")
        listing[path] = (digest.lower(), int(size))
        previous = path
    return listing


def file_digest(
    path: Path, progress: Callable[[str, int], None] | None = None, done: int = 0
) -> tuple[str, int]:
    """SHA-256 and size of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(str(path), done + size)
    return digest.hexdigest(), size


def bundle_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a sorted relative POSIX path; links and
    special files are refused (they could point outside the bundle)."""
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + files:
            full = Path(folder) / name
            relative = full.relative_to(root).as_posix()
            if full.is_symlink():
                raise BundleVerificationError(f"the bundle holds a symbolic link: {relative}")
            if name in files and not full.is_file():
                raise BundleVerificationError(f"the bundle holds a special file: {relative}")
            if name in files:
                found.append(relative)
    return sorted(found)


def verify_bundle(
    root: Path, key_text: str, progress: Callable[[str, int], None] | None = None
) -> Listing:
    """Run steps 1-5 on the bundle directory ``root``; return its listing."""
    key = parse_verifier_key(key_text)
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        raise BundleVerificationError(f"no {MANIFEST_NAME} in {root}: not a release bundle")
    try:
        message = manifest.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BundleVerificationError("MANIFEST is not UTF-8 text") from exc
    listing = parse_listing(open_manifest(message, key))
    done = 0
    for path, (digest, size) in listing.items():  # step 4
        full = root / path
        if full.is_symlink() or not full.is_file():
            raise BundleVerificationError(f"missing: {path}")
        if full.stat().st_size != size:
            raise BundleVerificationError(
                f"altered: {path} (size {full.stat().st_size}, listed {size})"
            )
        actual, _size = file_digest(full, progress, done)
        if not hmac.compare_digest(actual, digest):
            raise BundleVerificationError(f"altered: {path} (sha256 differs)")
        done += size
    for path in bundle_files(root):  # step 5
        if path != MANIFEST_NAME and path not in listing:
            raise BundleVerificationError(f"unlisted: {path} (not in the signed MANIFEST)")
    return listing


def _key_text(value: str) -> str:
    candidate = Path(value)
    if candidate.is_file():
        return candidate.read_text(encoding="utf-8").strip()
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle", type=Path, help="the bundle directory")
    parser.add_argument(
        "--key", required=True, help="release public key, or a file holding it (release.pub)"
    )
    args = parser.parse_args(argv)
    try:
        listing = verify_bundle(args.bundle, _key_text(args.key))
    except (BundleVerificationError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    total = sum(size for _digest, size in listing.values())
    print(f"OK: {len(listing)} files, {total} bytes, signed by the release key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
