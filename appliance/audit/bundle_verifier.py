#!/usr/bin/env python3
"""Standalone verifier for an audit evidence bundle exported by `appliance audit export`,
and for a consistency proof from `GET /audit/consistency` or `appliance audit prove
--consistency N M`.

Needs only Python 3.9+ and the `cryptography` package; it imports nothing from the
appliance. Run it next to the unpacked bundle, or on the .zip itself:

    python verify_bundle.py bundle.zip
    python verify_bundle.py bundle.zip --key "<name>+<key id>+<base64 key>"
    python verify_bundle.py consistency proof.json --key log.pub [--old A.txt] [--new B.txt]
    python verify_bundle.py receipt RECEIPT --key log.pub [--proof proof.json] [--answer A]

Pass --key with the public key you obtained independently (not the copy in the
bundle), as text or as a file holding it, to rule out a bundle signed by someone else.
Exit status 0: every check passed; 1: a check failed (the message names it).

Checks, citing the specifications:
1. the public key parses as a signed-note verifier key (C2SP signed-note): type 0x01
   Ed25519, or type 0x02 ECDSA (DER SubjectPublicKeyInfo on P-256, P-384 or P-521,
   key ID SHA-256(SPKI)[:4], signatures ASN.1 DER over SHA-256 of the note text), which
   a log whose HSM lacks Ed25519 signs with;
2. checkpoint.txt carries a valid signature by that key and is a well-formed
   C2SP tlog-checkpoint for the bundle's origin;
3. every record's leaf hashes (RFC 6962 §2.1) to a leaf whose inclusion proof leads
   to the checkpoint's root (RFC 9162 §2.1.3.2), at the index the leaf names;
4. every included ciphertext envelope hashes to the digest its leaf names;
5. every earlier checkpoint is signed by the same key and is consistent with the
   final one (RFC 9162 §2.1.4.2): the log only ever grew;
6. where the log changed its key (key_history.json, written when its keys moved into
   an HSM), each checkpoint is signed by the key of its tree size, the key given is
   one of them, and the first checkpoint under each new key is signed by the previous
   key too (a handover): a key that leaked after the change cannot sign for the log.

Checks of a consistency proof (`consistency`):
1. the public key parses (C2SP signed-note);
2. the new and the old checkpoint (from --new / --old, a monitor's own copies, else
   the ones in the proof file) carry valid signatures by that key, name one origin,
   and state the sizes and roots the proof is for (C2SP tlog-checkpoint); a tree of
   size 0 needs no checkpoint;
3. the proof leads from the old root to the new root (RFC 9162 §2.1.4.2): the log at
   the new size extends the log at the old size.

Checks of an answer's receipt (`receipt`), from the X-Audit-Receipt header value, the
stream's `: receipt <value>` SSE comment or a file holding either, with the proof from
`GET /audit/receipts/<request id>/proof[?since=N]` (--proof) and the answer (--answer:
its text, or the saved JSON response body or SSE stream). Each failure names the
part that failed (receipt signature, checkpoint signature, request inclusion,
completion inclusion, completion leaf, answer commitment, consistency, answer text):
1. the public keys parse (C2SP signed-note): --key, again for each key a log that
   moved its key has used (appliance audit keys history); a note is good if one of them
   signed it;
2. the receipt carries a valid signature by such a key (C2SP signed-note);
3. it is an appliance.receipt/v1 note: origin, request id, the request and completion
   leaves (index, RFC 6962 §2.1 leaf hash), and, on receipts since answer commitments,
   `answer <salt> <digest>`;
4. the proof's checkpoint is signed by such a key and names the receipt's origin (C2SP
   tlog-checkpoint);
5. the request leaf's inclusion proof leads to the checkpoint root (RFC 9162
   §2.1.3.2), at the index the receipt names;
6. the same for the completion leaf;
7. the leaf texts the proof shows hash to the receipt's leaves (RFC 6962 §2.1), name
   its request id, and the completion's names the receipt's answer digest
   (params.answer_commitment);
8. with a consistency proof (?since=N), the checkpoint extends the older one (--old, a
   copy the caller kept, else the one in the proof) (RFC 9162 §2.1.4.2);
9. with --answer, SHA-256(salt || the JSON array of the answer's texts, one per choice,
   RFC 8785) is the receipt's digest (a plain-text file is a one-choice answer; one
   trailing newline is forgiven). A receipt without an answer line cannot have its
   answer checked: that is a failure, stated as such.
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
from typing import TYPE_CHECKING, Any, TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
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


if TYPE_CHECKING:  # annotations only: ``X | Y`` is not a runtime value on Python 3.9
    PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
_ECDSA_CURVES = ("secp256r1", "secp384r1", "secp521r1")  # signed-note, type 0x02


def parse_key(text: str) -> tuple[str, bytes, PublicKey]:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise BundleError("malformed public key")
    name, key_id, encoded = parts
    raw = _b64(encoded)
    if len(raw) == 33 and raw[0] == 0x01:
        computed = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
        public: PublicKey = Ed25519PublicKey.from_public_bytes(raw[1:])
    elif len(raw) > 1 and raw[0] == 0x02:
        computed = hashlib.sha256(raw[1:]).digest()[:4]  # type 0x02: SHA-256(SPKI)
        try:
            loaded = serialization.load_der_public_key(raw[1:])
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise BundleError("public key is not a DER ECDSA key") from exc
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or (
            loaded.curve.name not in _ECDSA_CURVES
        ):
            raise BundleError("public key is not ECDSA on P-256, P-384 or P-521")
        public = loaded
    else:
        raise BundleError("public key is not an Ed25519 or ECDSA signed-note key")
    if computed.hex() != key_id:
        raise BundleError("public key id does not match the key")
    return name, computed, public


def check_signature(public: PublicKey, signature: bytes, message: bytes) -> None:
    """Raise InvalidSignature unless ``public`` signed ``message`` (Ed25519, or ECDSA
    with SHA-256 and a DER signature)."""
    if isinstance(public, Ed25519PublicKey):
        public.verify(signature, message)
    else:
        public.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def open_checkpoint(note: str, key: tuple[str, bytes, PublicKey]) -> tuple[str, int, bytes]:
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
            check_signature(public, raw[4:], text.encode())
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


def key_history(files: dict[str, bytes], trusted: tuple[str, bytes, PublicKey]) -> list[Any]:
    """[(first tree size, key), ...] from key_history.json: the log's checkpoint keys in
    order (a key changed when its HSM took over). The trusted key must be one of them.
    The sizes need no signature of their own: :func:`check_handovers` requires the
    first checkpoint of each key to be signed by the key before it too."""
    if "key_history.json" not in files:
        return [(0, trusted)]
    epochs = [
        (int(item["from_tree_size"]), parse_key(item["verifier_key"]))
        for item in json.loads(files["key_history.json"])
    ]
    starts = [start for start, _key in epochs]
    if not epochs or starts[0] != 0 or starts != sorted(set(starts)):
        raise BundleError("key_history.json: sizes must start at 0 and grow")
    if not any(key[:2] == trusted[:2] for _start, key in epochs):
        raise BundleError("the given key is not in the bundle's key history")
    return epochs


def key_for(history: list[Any], note: str) -> tuple[str, bytes, PublicKey]:
    """The key of the epoch holding the size the checkpoint claims (checked after)."""
    text = note.rpartition("\n\n")[0]
    lines = text.split("\n")
    claimed = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0
    chosen = history[0][1]
    for start, key in history:
        if start <= claimed:
            chosen = key
    return chosen  # type: ignore[no-any-return]


def check_handovers(history: list[Any], notes: list[str]) -> None:
    """The first checkpoint at or after each key's first size is signed by the previous
    key as well: each key vouches for the next."""
    sized = sorted((int(n.rpartition("\n\n")[0].split("\n")[1]), n) for n in notes)
    for number in range(1, len(history)):
        start = history[number][0]
        handover = next((n for size, n in sized if size >= start), None)
        if handover is not None:
            try:
                open_checkpoint(handover, history[number - 1][1])
            except BundleError as exc:
                raise BundleError(
                    f"no handover checkpoint signed by the key before the one from size {start}"
                ) from exc


def verify_bundle(path: Path, key_text: str | None = None) -> dict[str, Any]:
    files = _files(path)
    manifest = json.loads(files["manifest.json"])
    # 1.
    trusted = parse_key(key_text or files["public_key.txt"].decode())
    history = key_history(files, trusted)
    final_note = files["checkpoint.txt"].decode()
    key = key_for(history, final_note)
    # 2.
    origin, size, root = open_checkpoint(final_note, key)
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
    notes = [final_note]
    for line in io.StringIO(files.get("checkpoints.jsonl", b"").decode()):
        if not line.strip():
            continue
        item = json.loads(line)
        note = item["note"]
        old_origin, old_size, old_root = open_checkpoint(note, key_for(history, note))
        notes.append(note)
        if old_origin != origin:
            raise BundleError("an earlier checkpoint names another log")
        try:
            verify_consistency(old_size, size, old_root, root, [_b64(h) for h in item["proof"]])
        except BundleError as exc:
            raise BundleError(f"checkpoint at size {old_size}: {exc}") from exc
        earlier += 1
    # 6.
    check_handovers(history, notes)
    return {"origin": origin, "tree_size": size, "records": records, "checkpoints": earlier + 1}


_EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 §2.1: the root of no leaves


def _side(
    document: dict[str, Any], which: str, note: str | None, key: tuple[str, bytes, PublicKey]
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


# -- receipts (`receipt`) -----------------------------------------------------------

_RECEIPT_KIND = "appliance.receipt/v1"
_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")
if TYPE_CHECKING:  # annotations only (Python 3.9)
    from collections.abc import Callable

    Key = tuple[str, bytes, PublicKey]
T = TypeVar("T")


def parse_keys(text: str) -> list[Key]:
    """The log's keys, one a line: a log that moved its key (into an HSM) signed older
    receipts and checkpoints with the one before (``GET /audit/keys`` lists them)."""
    keys = [parse_key(line) for line in text.splitlines() if line.strip()]
    if not keys:
        raise BundleError("no public key given")
    return keys


def _by_any_key(keys: list[Key], check: Callable[[Key], T]) -> T:
    """``check`` with the first key it passes with (signed-note: a note is good if any
    trusted key signed it); else its most telling failure: a bad signature or a wrong
    note before "not signed by the given key"."""
    failures: list[BundleError] = []
    for key in keys:
        try:
            return check(key)
        except BundleError as exc:
            failures.append(exc)
    telling = [f for f in failures if "not signed by the given key" not in str(f)]
    raise (telling or failures)[0]


def open_note(note: str, key: Key) -> str:
    """The text of a signed note carrying a valid signature by ``key`` (C2SP signed-note:
    the text, a blank line, signature lines; signatures by other keys are ignored)."""
    text, sep, block = note.rpartition("\n\n")
    if not sep or not block.endswith("\n"):
        raise BundleError("malformed signed note")
    text += "\n"
    name, key_id, public = key
    good = False
    for line in block[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise BundleError("malformed signature line")
        signer, _, encoded = line[2:].partition(" ")
        raw = _b64(encoded)
        if signer != name or not hmac.compare_digest(raw[:4], key_id):
            continue
        try:
            check_signature(public, raw[4:], text.encode())
        except InvalidSignature as exc:
            raise BundleError("invalid signature") from exc
        good = True
    if not good:
        raise BundleError("not signed by the given key")
    return text


def read_receipt(value: str) -> str:
    """The receipt note from what a caller kept: the ``X-Audit-Receipt`` header value
    (base64url, no padding), the stream's SSE comment line ``: receipt <value>``, or
    the note itself."""
    if value.lstrip().startswith(_RECEIPT_KIND + "\n"):
        note = value.lstrip()
        return note if note.endswith("\n") else note + "\n"
    text = value.strip()
    if text.startswith(":"):
        text = text[1:].strip()
        text = text[len("receipt ") :].strip() if text.startswith("receipt ") else text
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded.translate(str.maketrans("-_", "+/")), validate=True)
        return raw.decode("utf-8")
    except (ValueError, UnicodeError) as exc:
        raise BundleError("receipt: not a receipt (base64url header value or note)") from exc


def _receipt_leaf(line: str, name: str) -> tuple[int, bytes]:
    word, index, encoded = [*line.split(" "), "", ""][:3]
    if word != name or not index.isdigit():
        raise BundleError(f"receipt: malformed, expected a {name} line")
    leaf = _b64(encoded)
    if len(leaf) != 32:
        raise BundleError(f"receipt: the {name} leaf hash is not 32 bytes")
    return int(index), leaf


def open_receipt(value: str, keys: list[Key]) -> dict[str, Any]:
    """A receipt's fields, once its signature by one of ``keys`` holds (steps 2 and 3
    of ``receipt``)."""
    note = read_receipt(value)
    try:
        text = _by_any_key(keys, lambda key: open_note(note, key))
    except BundleError as exc:
        raise BundleError(f"receipt signature: {exc}") from exc
    lines = text.split("\n")[:-1]
    if len(lines) not in (5, 6) or lines[0] != _RECEIPT_KIND:
        raise BundleError(f"receipt: not an {_RECEIPT_KIND} note")
    word, _, request_id = lines[2].partition(" ")
    if word != "request-id" or not request_id:
        raise BundleError("receipt: malformed, no request id")
    answer = None
    if len(lines) == 6:
        word, salt, digest = [*lines[5].split(" "), "", ""][:3]
        answer = (_b64(salt), _b64(digest))
        if word != "answer" or len(answer[0]) != 32 or len(answer[1]) != 32:
            raise BundleError("receipt: malformed answer line")
    return {
        "origin": lines[1],
        "request_id": request_id,
        "request": _receipt_leaf(lines[3], "request"),
        "completion": _receipt_leaf(lines[4], "completion"),
        "answer": answer,
    }


def answer_message(texts: list[str]) -> bytes:
    """The JSON array of the answer's texts, one per choice in choice order, as RFC 8785
    (JCS) serialises an array of strings: no whitespace, UTF-8, only ``"``, ``\\`` and
    control characters escaped (as appliance/audit/receipts.py ``answer_message``)."""
    return json.dumps(texts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _choices_texts(choices: list[Any], part: str) -> list[str]:
    """The text of each choice, in index order, as the gateway seals it: a choice's
    ``message.content`` / ``delta.content`` (chat) or ``text`` (completions) when a
    string; pieces of one choice joined."""
    texts: dict[int, str] = {}
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index, text, holder = choice.get("index", 0), choice.get("text"), choice.get(part)
        if isinstance(holder, dict):
            text = holder.get("content")
        if isinstance(index, int) and isinstance(text, str):
            texts[index] = texts.get(index, "") + text
    return [texts[i] for i in sorted(texts)]


def _output_text(output: list[Any]) -> str:
    """A Response object's ``output_text``: every ``output_text`` part of its messages."""
    pieces: list[str] = []
    for item in output:
        parts = item.get("content") if isinstance(item, dict) else None
        if not isinstance(parts, list) or item.get("type") != "message":
            continue
        pieces.extend(
            part["text"]
            for part in parts
            if isinstance(part, dict) and part.get("type") == "output_text"
            and isinstance(part.get("text"), str)
        )  # fmt: skip
    return "".join(pieces)


def _stream_texts(text: str) -> list[str]:
    """The answer of a saved SSE stream: chat/completion chunks' deltas per choice, or a
    Responses stream's ``response.output_text.delta`` events."""
    chunks: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("data:") and line[5:].strip() not in ("", "[DONE]"):
            chunk = json.loads(line[5:])
            chunks.append(chunk if isinstance(chunk, dict) else {})
    if any(str(c.get("type", "")).startswith("response.") for c in chunks):
        # As the gateway: the terminal event's output, else the deltas that came.
        final = [c.get("response") for c in chunks if c.get("type") in _RESPONSE_ENDS]
        if final and isinstance(final[-1], dict) and isinstance(final[-1].get("output"), list):
            return [_output_text(final[-1]["output"])]
        deltas = [c.get("delta") for c in chunks if c.get("type") == "response.output_text.delta"]
        return ["".join(d for d in deltas if isinstance(d, str))]
    pieces: dict[int, str] = {}
    for chunk in chunks:
        choices = chunk.get("choices") if isinstance(chunk, dict) else None
        for choice in choices if isinstance(choices, list) else []:
            found = _choices_texts([choice], "delta")
            if found:
                index = choice.get("index", 0)
                pieces[index] = pieces.get(index, "") + found[0]
    return [pieces[i] for i in sorted(pieces)]


def answer_texts(text: str) -> tuple[list[str], bool]:
    """What ``--answer`` holds: a saved JSON response body (chat, completion or
    Responses), a saved SSE stream, or else the plain text of a one-choice answer.
    Returns the texts and whether the file was plain text."""
    stripped = text.lstrip()
    if stripped.startswith(("data:", ":", "event:")):
        return _stream_texts(text), False
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("choices"), list):
        return _choices_texts(body["choices"], "message"), False
    if isinstance(body, dict) and body.get("object") == "response":
        output = body.get("output")
        return [_output_text(output if isinstance(output, list) else [])], False
    return [text], True


def check_answer(answer: tuple[bytes, bytes] | None, text: str) -> None:
    """Step 9: the salted digest of the answer's texts is the receipt's."""
    if answer is None:
        raise BundleError(
            "answer text: this receipt carries no answer commitment (issued before "
            "commitments existed), so the answer text cannot be checked"
        )
    salt, digest = answer
    texts, plain = answer_texts(text)
    candidates = [texts]
    if plain and text.endswith("\n"):
        candidates.append([text[:-1]])  # the newline an editor or `echo` adds
    for candidate in candidates:
        if hmac.compare_digest(hashlib.sha256(salt + answer_message(candidate)).digest(), digest):
            return
    raise BundleError("answer text: not the answer the receipt commits to")


def _check_leaf(part: dict[str, Any], name: str, receipt: dict[str, Any]) -> None:
    """Step 7: the leaf text the proof shows is the leaf the receipt names, for this
    request; the completion's names the receipt's answer digest (RFC 6962 §2.1)."""
    leaf_text = part.get("leaf")
    if leaf_text is None:
        return
    leaf_hash = hashlib.sha256(b"\x00" + leaf_text.encode("utf-8")).digest()
    if not hmac.compare_digest(leaf_hash, receipt[name][1]):
        raise BundleError(f"{name} leaf: the proof's leaf text is not the leaf the receipt names")
    meta = json.loads(leaf_text)["meta"]
    if meta.get("request_id") != receipt["request_id"]:
        raise BundleError(f"{name} leaf: the record is for another request id")
    if name == "completion" and receipt["answer"] is not None:
        sealed = (meta.get("params") or {}).get("answer_commitment")
        if sealed != base64.b64encode(receipt["answer"][1]).decode():
            raise BundleError(
                "answer commitment: the completion record in the log commits to another "
                "answer than the receipt"
            )


def _check_receipt_consistency(
    document: dict[str, Any],
    size: int,
    root: bytes,
    old_note: str | None,
    keys: list[Key],
) -> int:
    """Step 8: the proof's checkpoint extends an older one (RFC 9162 §2.1.4.2)."""
    try:
        if document.get("new_size") != size or not hmac.compare_digest(
            _b64(document.get("new_root_hash", "")), root
        ):
            raise BundleError("the proof is not to the proof's checkpoint")
        old_origin, old_size, old_root = _by_any_key(
            keys, lambda key: _side(document, "old", old_note, key)
        )
        if old_origin is not None and old_origin != document.get("origin"):
            raise BundleError(f"the old checkpoint names another log ({old_origin!r})")
        proof = [_b64(h) for h in document["consistency_proof"]]
        verify_consistency(old_size, size, old_root, root, proof)
    except BundleError as exc:
        raise BundleError(f"consistency: {exc}") from exc
    return old_size


def _check_proof(
    proof: dict[str, Any],
    receipt: dict[str, Any],
    keys: list[Key],
    old_note: str | None,
) -> tuple[int, int | None]:
    """Steps 4 to 8: (the checkpoint's tree size, the older size it extends or None)."""
    # 4.
    try:
        note = proof["checkpoint"]
        origin, size, root = _by_any_key(keys, lambda key: open_checkpoint(note, key))
    except BundleError as exc:
        raise BundleError(f"checkpoint signature: {exc}") from exc
    if origin != receipt["origin"]:
        raise BundleError(f"checkpoint: names log {origin!r}, the receipt {receipt['origin']!r}")
    # 5. and 6.
    for name in ("request", "completion"):
        index, leaf_hash = receipt[name]
        part = proof[name]
        try:
            if part["leaf_index"] != index:
                raise BundleError(f"the proof is for leaf {part['leaf_index']}, not {index}")
            hashes = [_b64(h) for h in part["inclusion_proof"]]
            verify_inclusion(leaf_hash, index, size, hashes, root)
        except BundleError as exc:
            raise BundleError(f"{name} inclusion: {exc}") from exc
        # 7.
        _check_leaf(part, name, receipt)
    # 8.
    if proof.get("consistency") is not None:
        return size, _check_receipt_consistency(proof["consistency"], size, root, old_note, keys)
    if old_note is not None:
        raise BundleError("consistency: --old given, but the proof holds no consistency proof")
    return size, None


def verify_receipt(
    value: str,
    key_text: str,
    proof: dict[str, Any] | None = None,
    answer: str | None = None,
    old_note: str | None = None,
) -> dict[str, Any]:
    """Check a receipt (the header value, SSE comment or note), with its proof document
    from ``GET /audit/receipts/<id>/proof`` and the answer text when given. Raises
    BundleError naming what failed; returns what was checked."""
    # 1.
    keys = parse_keys(key_text)
    # 2. and 3.
    receipt = open_receipt(value, keys)
    result: dict[str, Any] = {**receipt, "tree_size": None, "since": None, "answer_checked": False}
    if proof is not None:
        try:
            result["tree_size"], result["since"] = _check_proof(proof, receipt, keys, old_note)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise BundleError(f"proof: malformed ({type(exc).__name__}: {exc})") from exc
    # 9.
    if answer is not None:
        check_answer(receipt["answer"], answer)
        result["answer_checked"] = True
    return result


def receipt_summary(result: dict[str, Any]) -> str:
    """One line: what a receipt verification established, and what it did not."""
    request, completion = result["request"][0], result["completion"][0]
    said = [f"receipt for request {result['request_id']} signed by {result['origin']}"]
    if result["tree_size"] is None:
        said.append("inclusion not checked (no proof)")
    else:
        said.append(
            f"request {request} and completion {completion} included at tree size "
            f"{result['tree_size']}"
        )
    if result["since"] is not None:
        said.append(f"the log at {result['tree_size']} extends tree size {result['since']}")
    if result["answer_checked"]:
        said.append("the answer text is the one sealed")
    elif result["answer"] is None:
        said.append("no answer commitment (an older receipt)")
    else:
        said.append("answer text not checked (no answer given)")
    return "; ".join(said)


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


def receipt_value(value: str) -> str:
    """The receipt argument: its value, or a file holding it."""
    try:
        if len(value) < 4096 and Path(value).is_file():
            return Path(value).read_bytes().decode("utf-8")
    except OSError:
        pass
    return value


def main_receipt(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="verify_bundle.py receipt",
        description="Verify an answer's receipt, its proof and the answer text",
    )
    parser.add_argument("receipt", help="the X-Audit-Receipt value, or a file holding it")
    parser.add_argument(
        "--key", required=True, action="append",
        help="the log's public key (text or file); again for each earlier key it used",
    )  # fmt: skip
    parser.add_argument("--proof", type=Path, help="JSON from GET /audit/receipts/ID/proof")
    parser.add_argument("--answer", type=Path, help="the answer: its text, or the JSON body")
    parser.add_argument("--old", type=Path, help="your copy of an older checkpoint")
    args = parser.parse_args(argv)
    try:
        proof = json.loads(args.proof.read_bytes()) if args.proof is not None else None
        answer = args.answer.read_bytes().decode("utf-8") if args.answer is not None else None
        result = verify_receipt(
            receipt_value(args.receipt), "\n".join(_key_text(k) or "" for k in args.key),
            proof, answer,
            _read(args.old),
        )  # fmt: skip
    except (BundleError, KeyError, TypeError, ValueError, AttributeError, OSError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"OK: {receipt_summary(result)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["consistency"]:
        return main_consistency(argv[1:])
    if argv[:1] == ["receipt"]:
        return main_receipt(argv[1:])
    parser = argparse.ArgumentParser(
        description="Verify an appliance audit evidence bundle",
        epilog="Consistency proofs: verify_bundle.py consistency PROOF.json --key KEY "
        "[--old FILE] [--new FILE]. Receipts: verify_bundle.py receipt RECEIPT --key KEY "
        "[--proof FILE] [--answer FILE] [--old FILE]",
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
