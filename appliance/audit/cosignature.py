"""C2SP tlog-cosignature v1 with Ed25519: a witness's statement that, at a time, the
checkpoint is the largest consistent tree it has seen for the log. Pure: no I/O; the
time is a parameter.

References:
- C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature): the signature line is
  ``— <name> base64(key ID || u64 timestamp || Ed25519 signature)``; key ID =
  SHA-256(name || 0x0A || 0x04 || public key)[:4]; the signed message is
  ``cosignature/v1\\n`` ``time <decimal>\\n`` and the whole checkpoint body.
- C2SP signed-note verifier keys (``<name>+<hex key ID>+base64(0x04 || public key)``).
"""

from __future__ import annotations

import base64
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from appliance.audit.checkpoint import SignedNote, key_id, parse_note
from appliance.errors import VerificationError

__all__ = [
    "COSIGNATURE_V1",
    "Cosigner",
    "CosignerVerifier",
    "cosigned_message",
    "verify_cosignature",
]

COSIGNATURE_V1 = 0x04
_DASH = "\u2014 "
_MAX_TIMESTAMP = 2**63 - 1


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a cosigner signs: header line, time line, then the checkpoint body."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c.isspace() or c == "+" for c in name)


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise VerificationError("malformed base64 in a cosigner key") from exc


@dataclass(frozen=True)
class Cosigner:
    """A witness's Ed25519 cosigning key; ``name`` identifies the witness."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise ValueError(f"invalid cosigner name {self.name!r}")

    @classmethod
    def generate(cls, name: str) -> Cosigner:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_signer_key(cls, text: str) -> Cosigner:
        """Parse ``PRIVATE+KEY+<name>+<hex id>+base64(0x04 || seed)``."""
        parts = text.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise VerificationError("malformed cosigner key")
        name, hex_id, encoded = parts[2:]
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
            raise VerificationError("not an Ed25519 cosignature/v1 key (type 0x04)")
        cosigner = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if cosigner.key_id.hex() != hex_id.lower():
            raise VerificationError("cosigner key id does not match the key")
        return cosigner

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes_raw()

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, COSIGNATURE_V1, self.public_key)

    def signer_key(self) -> str:
        encoded = base64.b64encode(bytes([COSIGNATURE_V1]) + self.private_key.private_bytes_raw())
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded.decode()}"

    def verifier(self) -> CosignerVerifier:
        return CosignerVerifier(self.name, Ed25519PublicKey.from_public_bytes(self.public_key))

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line (with its newline) over checkpoint ``body``."""
        signature = self.private_key.sign(cosigned_message(body, timestamp))
        raw = self.key_id + struct.pack(">Q", timestamp) + signature
        return f"{_DASH}{self.name} {base64.b64encode(raw).decode()}\n"

    def __repr__(self) -> str:
        return f"Cosigner(name={self.name!r}, key_id={self.key_id.hex()!r})"


@dataclass(frozen=True)
class CosignerVerifier:
    name: str
    public_key: Ed25519PublicKey

    @classmethod
    def from_verifier_key(cls, text: str) -> CosignerVerifier:
        """Parse ``<name>+<hex id>+base64(0x04 || public key)``; VerificationError."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3 or not _valid_name(parts[0]) or len(parts[1]) != 8:
            raise VerificationError("malformed cosigner verifier key")
        name, hex_id, encoded = parts
        raw = _b64decode(encoded)
        if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
            raise VerificationError("not an Ed25519 cosignature/v1 verifier key (type 0x04)")
        if key_id(name, COSIGNATURE_V1, raw[1:]).hex() != hex_id.lower():
            raise VerificationError("cosigner verifier key id does not match the key")
        return cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, COSIGNATURE_V1, self.public_key.public_bytes_raw())

    def verifier_key(self) -> str:
        raw = bytes([COSIGNATURE_V1]) + self.public_key.public_bytes_raw()
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(raw).decode()}"


def verify_cosignature(note: str | SignedNote, verifier: CosignerVerifier) -> int:
    """The newest valid timestamp among ``verifier``'s cosignatures on the signed note;
    VerificationError when it has none (signatures by other keys are ignored)."""
    parsed = parse_note(note) if isinstance(note, str) else note
    found = [
        s
        for s in parsed.signatures
        if s.name == verifier.name and hmac.compare_digest(s.key_id, verifier.key_id)
    ]
    if not found:
        raise VerificationError(f"no cosignature by witness {verifier.name}")
    newest = -1
    for signature in found:
        if len(signature.signature) != 8 + 64:
            raise VerificationError(f"malformed cosignature by witness {verifier.name}")
        (timestamp,) = struct.unpack(">Q", signature.signature[:8])
        try:
            verifier.public_key.verify(
                signature.signature[8:], cosigned_message(parsed.text, timestamp)
            )
        except (InvalidSignature, ValueError) as exc:
            raise VerificationError(f"invalid cosignature by witness {verifier.name}") from exc
        newest = max(newest, timestamp)
    return newest
