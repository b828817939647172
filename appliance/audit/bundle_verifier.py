#!/usr/bin/env python3
"""Standalone verifier for an audit evidence bundle exported by `appliance audit export`,
and for a consistency proof from `GET /audit/consistency` or `appliance audit prove
--consistency N M`.

Needs only Python 3.9+ and the `cryptography` package; it imports nothing from the
appliance. Run it next to the unpacked bundle, or on the .zip itself:

    python verify_bundle.py bundle.zip
    python verify_bundle.py bundle.zip --key "<name>+<key id>+<base64 key>"
    python verify_bundle.py consistency proof.json --key log.pub [--old A.txt] [--new B.txt]

Pass --key with the public key you obtained independently (not the copy in the
bundle), as text or as a file holding it, to rule out a bundle signed by someone else.
Exit status 0: every check passed; 1: a check failed (the message names it).

Checks, citing the specifications:
1. the public key parses as a signed-note Ed25519 verifier key (C2SP signed-note);
2. checkpoint.txt carries a valid Ed25519 signature by that key and is a well-formed
   C2SP tlog-checkpoint for the bundle's origin;
3. every record's leaf hashes (RFC 6962 §2.1) to a leaf whose inclusion proof leads
   to the checkpoint's root (RFC 9162 §2.1.3.2), at the index the leaf names;
4. every included ciphertext envelope hashes to the digest its leaf names;
5. every earlier checkpoint is signed by the same key and is consistent with the
   final one (RFC 9162 §2.1.4.2): the log only ever grew.

Checks of a consistency proof (`consistency`):
1. the public key parses (C2SP signed-note);
2. the new and the old checkpoint (from --new / --old, a monitor's own copies, else
   the ones in the proof file) carry valid signatures by that key, name one origin,
   and state the sizes and roots the proof is for (C2SP tlog-checkpoint); a tree of
   size 0 needs no checkpoint;
3. the proof leads from the old root to the new root (RFC 9162 §2.1.4.2): the log at
   the new size extends the log at the old size.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class BundleError(Exception):
    pass


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise BundleError(f"malformed base64: {text[:20]}...") from exc


def parse_key(text: str) -> tuple[str, bytes, Ed25519PublicKey]:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise BundleError("malformed public key")
    name, key_id, encoded = parts
    raw = _b64(encoded)
    if len(raw) != 33 or raw[0] != 0x01:
        raise BundleError("public key is not an Ed25519 signed-note key")
    computed = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if computed.hex() != key_id:
        raise BundleError("public key id does not match the key")
    return name, computed, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note: str, key: tuple[str, bytes, Ed25519PublicKey]) -> tuple[str, int, bytes]:
    name, key_id, public = key
    text, sep, block = note.rpartition("\n\n")
    if not sep or not block.endswith("\n"):
        raise BundleError("malformed signed note")
    text += "\n"
    good = False
    for line in block[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise BundleError("malformed signature line")
        signer, _, encoded = line[2:].partition(" ")
        raw = _b64(encoded)
        if signer != name or not hmac.compare_digest(raw[:4], key_id):
            continue  # signed-note: ignore signatures by unknown keys
        try:
            public.verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise BundleError("checkpoint signature is invalid") from exc
        good = True
    if not good:
        raise BundleError("checkpoint is not signed by the given key")
    lines = text.split("\n")
    if len(lines) < 4 or not lines[1].isdigit():
        raise BundleError("malformed checkpoint body")
    root = _b64(lines[2])
    if len(root) != 32:
        raise BundleError("checkpoint root is not 32 bytes")
    return lines[0], int(lines[1]), root


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        raise BundleError("leaf index outside the tree")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise BundleError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or not hmac.compare_digest(r, root):
        raise BundleError("inclusion proof does not lead to the checkpoint root")


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    """RFC 9162 §2.1.4.2 (as appliance/audit/merkle.py's verify_consistency)."""
    if any(len(h) != 32 for h in proof):
        raise BundleError("a consistency proof hash is not 32 bytes")
    if old > new:
        raise BundleError("tree size went back")
    if old == new:
        if proof:
            raise BundleError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise BundleError("two roots for one tree size")
        return
    if old == 0:
        if proof:
            raise BundleError("consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise BundleError("empty consistency proof")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise BundleError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise BundleError("consistency proof has too few hashes")
    if not hmac.compare_digest(fr, old_root):
        raise BundleError("consistency proof does not lead to the old checkpoint's root")
    if not hmac.compare_digest(sr, new_root):
        raise BundleError("consistency proof does not lead to the new checkpoint's root")


def _files(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def verify_bundle(path: Path, key_text: str | None = None) -> dict[str, Any]:
    files = _files(path)
    manifest = json.loads(files["manifest.json"])
    # 1.
    key = parse_key(key_text or files["public_key.txt"].decode())
    # 2.
    origin, size, root = open_checkpoint(files["checkpoint.txt"].decode(), key)
    if origin != manifest["origin"]:
        raise BundleError(
            f"checkpoint origin {origin!r} is not the bundle's {manifest['origin']!r}"
        )
    records = 0
    for number, line in enumerate(io.StringIO(files["records.jsonl"].decode()), start=1):
        if not line.strip():
            continue
        item = json.loads(line)
        leaf_text: str = item["leaf"]
        leaf = json.loads(leaf_text)
        index = item["index"]
        # 3.
        if leaf["index"] != index:
            raise BundleError(f"line {number}: leaf names index {leaf['index']}, not {index}")
        leaf_hash = hashlib.sha256(b"\x00" + leaf_text.encode("utf-8")).digest()
        try:
            verify_inclusion(leaf_hash, index, size, [_b64(h) for h in item["proof"]], root)
        except BundleError as exc:
            record_id = leaf["meta"]["record_id"]
            raise BundleError(f"record {index} ({record_id}): {exc}") from exc
        # 4.
        if item.get("envelope") is not None:
            digest = hashlib.sha256(_b64(item["envelope"])).hexdigest()
            if leaf["content"] is None or digest != leaf["content"]["sha256"]:
                raise BundleError(f"record {index}: envelope does not match its leaf")
        records += 1
    if records != manifest["records"]:
        raise BundleError(f"bundle lists {manifest['records']} records but holds {records}")
    # 5.
    earlier = 0
    for line in io.StringIO(files.get("checkpoints.jsonl", b"").decode()):
        if not line.strip():
            continue
        item = json.loads(line)
        old_origin, old_size, old_root = open_checkpoint(item["note"], key)
        if old_origin != origin:
            raise BundleError("an earlier checkpoint names another log")
        try:
            verify_consistency(old_size, size, old_root, root, [_b64(h) for h in item["proof"]])
        except BundleError as exc:
            raise BundleError(f"checkpoint at size {old_size}: {exc}") from exc
        earlier += 1
    return {"origin": origin, "tree_size": size, "records": records, "checkpoints": earlier + 1}


_EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 §2.1: the root of no leaves


def _side(
    document: dict[str, Any], which: str, note: str | None, key: tuple[str, bytes, Ed25519PublicKey]
) -> tuple[str | None, int, bytes]:
    """(origin, size, root) of the old or new tree, from its signed checkpoint."""
    size = document[f"{which}_size"]
    stated = _b64(document[f"{which}_root_hash"])
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BundleError(f"{which}_size is not a tree size")
    note = note if note is not None else document.get(f"{which}_checkpoint")
    if note is None:
        if size == 0:
            if not hmac.compare_digest(stated, _EMPTY_ROOT):
                raise BundleError("the root of the empty tree is not SHA-256 of nothing")
            return None, 0, stated
        flag = "--old" if which == "old" else "--new"
        raise BundleError(
            f"no signed checkpoint for the {which} tree (size {size}): pass {flag} FILE"
        )
    try:
        origin, signed_size, root = open_checkpoint(note, key)
    except BundleError as exc:
        raise BundleError(f"{which} checkpoint: {exc}") from exc
    if signed_size != size:
        raise BundleError(
            f"the {which} checkpoint is for tree size {signed_size}, the proof for {size}"
        )
    if not hmac.compare_digest(root, stated):
        raise BundleError(f"the {which} root in the proof is not the {which} checkpoint's root")
    return origin, size, root


def verify_consistency_file(
    path: Path, key_text: str, old_note: str | None = None, new_note: str | None = None
) -> dict[str, Any]:
    """Check a consistency proof file against two signed checkpoints."""
    document = json.loads(path.read_text(encoding="utf-8"))
    # 1.
    key = parse_key(key_text)
    # 2.
    new_origin, new_size, new_root = _side(document, "new", new_note, key)
    old_origin, old_size, old_root = _side(document, "old", old_note, key)
    if old_origin is not None and old_origin != new_origin:
        raise BundleError(
            f"the old checkpoint names log {old_origin!r}, the new one {new_origin!r}"
        )
    # 3.
    proof = [_b64(h) for h in document["consistency_proof"]]
    try:
        verify_consistency(old_size, new_size, old_root, new_root, proof)
    except BundleError as exc:
        raise BundleError(f"tree size {old_size} to {new_size}: {exc}") from exc
    # Only the empty tree has no checkpoint; its "log" is the file's word for it.
    origin = new_origin if new_origin is not None else str(document.get("origin"))
    return {"origin": origin, "old_size": old_size, "new_size": new_size}


def _key_text(value: str | None) -> str | None:
    """A key given as text, or as the path of a file holding it."""
    if value is not None and Path(value).is_file():
        return Path(value).read_text(encoding="ascii")
    return value


def _read(path: Path | None) -> str | None:
    return path.read_text(encoding="utf-8") if path is not None else None


def main_consistency(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="verify_bundle.py consistency",
        description="Verify a consistency proof: the log at the new size extends the old",
    )
    parser.add_argument("proof", type=Path, help="JSON from GET /audit/consistency")
    parser.add_argument("--key", required=True, help="the log's public key (text or file)")
    parser.add_argument("--old", type=Path, help="your copy of the old checkpoint")
    parser.add_argument("--new", type=Path, help="your copy of the new checkpoint")
    args = parser.parse_args(argv)
    try:
        key_text = _key_text(args.key) or ""
        result = verify_consistency_file(args.proof, key_text, _read(args.old), _read(args.new))
    except (BundleError, KeyError, TypeError, ValueError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        f"OK: {result['origin']} at tree size {result['new_size']} extends tree size "
        f"{result['old_size']}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["consistency"]:
        return main_consistency(argv[1:])
    parser = argparse.ArgumentParser(
        description="Verify an appliance audit evidence bundle",
        epilog="Consistency proofs: verify_bundle.py consistency PROOF.json --key KEY "
        "[--old FILE] [--new FILE]",
    )
    parser.add_argument("bundle", type=Path, help="the .zip (or its unpacked folder)")
    parser.add_argument("--key", help="public key obtained independently (default: the bundle's)")
    args = parser.parse_args(argv)
    try:
        result = verify_bundle(args.bundle, _key_text(args.key))
    except (BundleError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        f"OK: {result['records']} records included in {result['origin']} at tree size "
        f"{result['tree_size']}; {result['checkpoints']} checkpoints consistent"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
