"""C2SP checkpoints in signed notes, with Ed25519 or ECDSA P-256 keys. Pure: no I/O,
no clock.

References:
- C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the note body is the
  origin line, the decimal tree size and the base64 root hash, each ending in a
  newline; a log MUST NOT sign two inconsistent checkpoints.
- C2SP signed-note (https://c2sp.org/signed-note), as implemented by
  golang.org/x/mod/sumdb/note: text ending in a newline, a blank line, then lines
  ``— <name> base64(key ID || signature)``; key ID = SHA-256(name || 0x0A || type ||
  public key)[:4]; type 0x01 = Ed25519. Verifier keys are written
  ``<name>+<hex key ID>+base64(type || public key)``.
- signed-note §Signature types, type 0x02: ECDSA "as implemented by
  github.com/transparency-dev/witness" (its formats/note package): an ASN.1 DER ECDSA
  signature over SHA-256(note text); the public key is the DER SubjectPublicKeyInfo,
  and the key ID is SHA-256(SPKI)[:4] (the name is not hashed in). The curve MUST be
  P-256, P-384 or P-521. The log signs with P-256 only where its HSM lacks Ed25519
  (docs/audit.md, Keys in an HSM); ECDSA signatures are randomised, so two signatures
  of one checkpoint differ, and both verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from appliance.audit.merkle import HASH_SIZE
from appliance.errors import VerificationError

__all__ = [
    "ECDSA",
    "ED25519",
    "Checkpoint",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "PublicKey",
    "SignedNote",
    "SigningKey",
    "check_signature",
    "key_id",
    "key_type_of",
    "parse_checkpoint",
    "parse_note",
    "public_key_bytes",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_note",
]

ED25519 = 0x01
ECDSA = 0x02
# signed-note: "The ECDSA curve MUST be one of NIST P-256, NIST P-384, or NIST P-521".
_ECDSA_CURVES = ("secp256r1", "secp384r1", "secp521r1")
_DASH = "\u2014 "
_MAX_SIGNATURES = 100  # signed-note: verifiers must accept at least 16


PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey


def key_id(name: str, key_type: int, public_key: bytes) -> bytes:
    """signed-note §Signatures: SHA-256(name || 0x0A || type || public key)[:4]; for
    type 0x02 (ECDSA) SHA-256(DER SubjectPublicKeyInfo)[:4]."""
    if key_type == ECDSA:
        return hashlib.sha256(public_key).digest()[:4]
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


def key_type_of(public_key: PublicKey) -> int:
    return ED25519 if isinstance(public_key, Ed25519PublicKey) else ECDSA


def public_key_bytes(public_key: PublicKey) -> bytes:
    """The key as a verifier key carries it: 32 raw bytes (Ed25519) or DER SPKI (ECDSA)."""
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes_raw()
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_public_key(key_type: int, encoded: bytes) -> PublicKey:
    """The public key of a verifier key; VerificationError for any other type or curve."""
    if key_type == ED25519 and len(encoded) == 32:
        return Ed25519PublicKey.from_public_bytes(encoded)
    if key_type == ECDSA:
        try:
            loaded = serialization.load_der_public_key(encoded)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise VerificationError("verifier key is not a DER ECDSA public key") from exc
        if isinstance(loaded, ec.EllipticCurvePublicKey) and loaded.curve.name in _ECDSA_CURVES:
            return loaded
        raise VerificationError("verifier key is not on P-256, P-384 or P-521")
    raise VerificationError("verifier key is not an Ed25519 or ECDSA signed-note key")


def check_signature(public_key: PublicKey, signature: bytes, message: bytes) -> None:
    """Raise InvalidSignature unless ``signature`` is ``public_key``'s over ``message``:
    Ed25519 (RFC 8032), or ECDSA over SHA-256 with a DER signature (type 0x02)."""
    if isinstance(public_key, Ed25519PublicKey):
        public_key.verify(signature, message)
    else:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("malformed base64") from exc


class SigningKey(Protocol):
    """A private key that signs but need not be readable: one in memory
    (``Ed25519PrivateKey``) or one that never leaves an HSM (appliance.audit.hsm).
    ``sign`` answers what :func:`check_signature` checks: an Ed25519 signature, or for
    an ECDSA public key a DER ECDSA signature over SHA-256 of ``data``."""

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> PublicKey: ...


@dataclass(frozen=True)
class NoteSigner:
    """A note signer; ``name`` is the key name (the log's origin).

    ``also``: a second signer whose line every note also carries. A key migration
    (appliance.audit.key_history) signs its handover checkpoint with the outgoing and
    the incoming key this way, so each vouches for the other."""

    name: str
    private_key: Ed25519PrivateKey | SigningKey
    also: NoteSigner | None = None

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise ValueError(f"invalid key name {self.name!r}")

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_signer_key(cls, text: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex id>+base64(0x01 || seed)``."""
        parts = text.strip().split("+", 4)  # base64 may contain "+"
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise VerificationError("malformed signer key")
        name, hex_id, encoded = parts[2:]
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != ED25519:
            raise VerificationError("signer key is not an Ed25519 key")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id.hex() != hex_id.lower():
            raise VerificationError("signer key id does not match the key")
        return signer

    @property
    def key_type(self) -> int:
        return key_type_of(self.private_key.public_key())

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.private_key.public_key())

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key_type, self.public_key)

    def signer_key(self) -> str:
        if not isinstance(self.private_key, Ed25519PrivateKey):
            raise ValueError("this signing key is held in a token and cannot be exported")
        seed = self.private_key.private_bytes_raw()
        encoded = base64.b64encode(bytes([ED25519]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded}"

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def __repr__(self) -> str:
        return f"NoteSigner(name={self.name!r}, key_id={self.key_id.hex()!r})"


@dataclass(frozen=True)
class NoteVerifier:
    name: str
    public_key: PublicKey

    @classmethod
    def from_verifier_key(cls, text: str) -> NoteVerifier:
        """Parse ``<name>+<hex id>+base64(type || public key)``, type 0x01 (Ed25519) or
        0x02 (ECDSA, DER SPKI); raise VerificationError."""
        parts = text.strip().split("+", 2)  # base64 may contain "+"
        if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
            raise VerificationError("malformed verifier key")
        name, hex_id, encoded = parts
        raw = _b64decode(encoded)
        if len(raw) < 2:
            raise VerificationError("malformed verifier key")
        public = _load_public_key(raw[0], raw[1:])
        if key_id(name, raw[0], raw[1:]).hex() != hex_id:
            raise VerificationError("verifier key id does not match the key")
        return cls(name, public)

    @property
    def key_type(self) -> int:
        return key_type_of(self.public_key)

    @property
    def algorithm(self) -> str:
        """``Ed25519`` or ``ECDSA <curve>`` (for people reading a key history)."""
        if isinstance(self.public_key, Ed25519PublicKey):
            return "Ed25519"
        return f"ECDSA {self.public_key.curve.name}"

    @property
    def raw_public_key(self) -> bytes:
        """Raw 32 bytes (Ed25519) or DER SubjectPublicKeyInfo (ECDSA)."""
        return public_key_bytes(self.public_key)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.key_type, self.raw_public_key)

    def verifier_key(self) -> str:
        encoded = base64.b64encode(bytes([self.key_type]) + self.raw_public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def check(self, signature: bytes, message: bytes) -> None:
        """Raise InvalidSignature unless this key signed ``message``."""
        check_signature(self.public_key, signature, message)


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    text: str
    signatures: tuple[NoteSignature, ...]


# Control characters but the newline; a regular expression scans in C (a receipt is
# signed per answer, on the event loop).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text:
        raise VerificationError("malformed note text")
    if _CONTROL.search(text):
        raise VerificationError("note text has control characters")


def sign_note(text: str, signer: NoteSigner) -> str:
    _check_text(text)
    lines = []
    current: NoteSigner | None = signer
    while current is not None:
        encoded = base64.b64encode(current.key_id + current.sign(text.encode())).decode()
        lines.append(f"{_DASH}{current.name} {encoded}\n")
        current = current.also
    return f"{text}\n{''.join(lines)}"


def parse_note(message: str) -> SignedNote:
    """Split a signed note into text and signatures (none verified yet)."""
    text, sep, block = message.rpartition("\n\n")
    if not sep or not block.endswith("\n"):
        raise VerificationError("malformed note: no signature block")
    text += "\n"
    _check_text(text)
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(_DASH):
            raise VerificationError("malformed note signature line")
        name, space, encoded = line[len(_DASH) :].partition(" ")
        if not space or not _valid_name(name):
            raise VerificationError("malformed note signature line")
        raw = _b64decode(encoded)
        if len(raw) < 5:
            raise VerificationError("malformed note signature")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    if len(signatures) > _MAX_SIGNATURES:
        raise VerificationError("note has too many signatures")
    return SignedNote(text, tuple(signatures))


def verify_note(message: str, verifier: NoteVerifier) -> str:
    """Return the note text if ``verifier``'s key signed it; signatures by other keys are
    ignored (signed-note: verifiers must ignore unknown keys)."""
    # Step 1: parse text and signature lines.
    note = parse_note(message)
    # Step 2: find the signature whose name and key ID match the trusted key.
    wanted = verifier.key_id
    found = [
        s
        for s in note.signatures
        if s.name == verifier.name and hmac.compare_digest(s.key_id, wanted)
    ]
    if not found:
        raise VerificationError(f"note has no signature by key {verifier.name}+{wanted.hex()}")
    # Step 3: verify the text bytes under that key (Ed25519, or ECDSA for type 0x02).
    for signature in found:
        try:
            verifier.check(signature.signature, note.text.encode())
        except InvalidSignature as exc:
            raise VerificationError(f"invalid signature for key {verifier.name}") from exc
    return note.text


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes

    def body(self) -> str:
        """tlog-checkpoint: origin, decimal size, base64 root hash, one per line."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode()}\n"


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise VerificationError("malformed checkpoint: fewer than three lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not origin:
        raise VerificationError("malformed checkpoint: empty origin")
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise VerificationError("malformed checkpoint: tree size is not a decimal number")
    root = _b64decode(root_text)
    if len(root) != HASH_SIZE:
        raise VerificationError("malformed checkpoint: root hash is not 32 bytes")
    return Checkpoint(origin=origin, size=int(size_text), root_hash=root)


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    return sign_note(checkpoint.body(), signer)


def verify_checkpoint(message: str, verifier: NoteVerifier, *, origin: str) -> Checkpoint:
    """Verify a signed checkpoint and return it; raise VerificationError.

    Steps (tlog-checkpoint §Note text, signed-note §Verification):
    1. the signed note carries a valid signature by the trusted key;
    2. the note text is a well-formed checkpoint body;
    3. its origin line is the log's origin."""
    text = verify_note(message, verifier)
    checkpoint = parse_checkpoint(text)
    if checkpoint.origin != origin:
        raise VerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not this log's origin {origin!r}"
        )
    return checkpoint
