"""Envelope encryption of record content. Pure: keys in, bytes out.

Each record's content is encrypted with a fresh 256-bit data key (AES-256-GCM, a
random 96-bit nonce, the record's canonical metadata as associated data); the data
key is wrapped with the subject's key (AES key wrap, RFC 3394). Subject keys are in
turn wrapped by the master key (see appliance.keys.provider). Destroying a subject
key makes every envelope sealed under it unreadable: crypto-shredding.

Envelope bytes (all lengths fixed except the key id and the ciphertext):
``0x01 || len(key_id) || key_id (ASCII) || wrapped DEK (40) || nonce (12) || ciphertext+tag``
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from appliance.errors import VerificationError

__all__ = ["ENVELOPE_VERSION", "Envelope", "open_envelope", "seal"]

ENVELOPE_VERSION = 0x01
_WRAPPED_DEK = 40
_NONCE = 12


@dataclass(frozen=True)
class Envelope:
    key_id: str
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes

    def to_bytes(self) -> bytes:
        key_id = self.key_id.encode("ascii")
        return (
            bytes([ENVELOPE_VERSION, len(key_id)])
            + key_id
            + self.wrapped_dek
            + self.nonce
            + self.ciphertext
        )

    @classmethod
    def from_bytes(cls, blob: bytes) -> Envelope:
        if len(blob) < 2 or blob[0] != ENVELOPE_VERSION:
            raise VerificationError("not a version-1 audit envelope")
        size = blob[1]
        start = 2 + size
        if len(blob) < start + _WRAPPED_DEK + _NONCE + 16:
            raise VerificationError("audit envelope is truncated")
        return cls(
            key_id=blob[2:start].decode("ascii", "replace"),
            wrapped_dek=blob[start : start + _WRAPPED_DEK],
            nonce=blob[start + _WRAPPED_DEK : start + _WRAPPED_DEK + _NONCE],
            ciphertext=blob[start + _WRAPPED_DEK + _NONCE :],
        )


def seal(plaintext: bytes, *, associated_data: bytes, subject_key: bytes, key_id: str) -> bytes:
    dek = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, associated_data)
    return Envelope(key_id, aes_key_wrap(subject_key, dek), nonce, ciphertext).to_bytes()


def open_envelope(blob: bytes, *, associated_data: bytes, subject_key: bytes) -> bytes:
    """Decrypt; raise VerificationError if the key, the metadata or the bytes differ."""
    envelope = Envelope.from_bytes(blob)
    try:
        dek = aes_key_unwrap(subject_key, envelope.wrapped_dek)
    except InvalidUnwrap as exc:
        raise VerificationError("the data key does not unwrap with this subject key") from exc
    try:
        return AESGCM(dek).decrypt(envelope.nonce, envelope.ciphertext, associated_data)
    except InvalidTag as exc:
        raise VerificationError("content or its metadata was altered") from exc
