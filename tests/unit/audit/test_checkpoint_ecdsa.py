"""Signed notes with ECDSA keys (C2SP signed-note type 0x02), as a log whose HSM lacks
Ed25519 signs them, checked by the appliance's verifier and the standalone one."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.audit import bundle_verifier
from appliance.audit.checkpoint import (
    ECDSA,
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    parse_note,
    sign_checkpoint,
    verify_checkpoint,
)
from appliance.errors import VerificationError
from tests.support.audit import ORIGIN

# Sigstore's Rekor log key, as transparency-dev/formats/note documents it: a real type
# 0x02 verifier key whose key ID (SHA-256 of the DER SPKI, name not hashed in) is c0d23d6a.
REKOR = (
    "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGv"
    "XwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc="
)
BODY = Checkpoint(ORIGIN, 7, bytes(range(32)))


class SoftwareEcdsaKey:
    """An ECDSA key in memory, signing as the token does (DER over SHA-256)."""

    def __init__(self, curve: ec.EllipticCurve | None = None) -> None:
        self._key = ec.generate_private_key(curve or ec.SECP256R1())

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()


def test_a_published_ecdsa_verifier_key_parses_with_its_key_id() -> None:
    verifier = NoteVerifier.from_verifier_key(REKOR)
    assert verifier.key_type == ECDSA and verifier.algorithm == "ECDSA secp256r1"
    assert verifier.key_id.hex() == "c0d23d6a"
    assert verifier.verifier_key() == REKOR  # round trip
    name, key_id, _public = bundle_verifier.parse_key(REKOR)
    assert (name, key_id.hex()) == ("rekor.sigstore.dev", "c0d23d6a")


def test_an_ecdsa_checkpoint_verifies_and_a_changed_byte_does_not() -> None:
    signer = NoteSigner(ORIGIN, SoftwareEcdsaKey())
    note = sign_checkpoint(BODY, signer)
    key = signer.verifier().verifier_key()
    assert base64.b64decode(key.split("+", 2)[2])[0] == 0x02

    assert verify_checkpoint(note, NoteVerifier.from_verifier_key(key), origin=ORIGIN) == BODY
    assert bundle_verifier.open_checkpoint(note, bundle_verifier.parse_key(key))[1] == 7
    # ECDSA is randomised: a second signature differs and verifies too.
    again = sign_checkpoint(BODY, signer)
    assert again != note
    verify_checkpoint(again, signer.verifier(), origin=ORIGIN)

    forged = note.replace("\n7\n", "\n8\n")
    with pytest.raises(VerificationError, match="invalid signature"):
        verify_checkpoint(forged, signer.verifier(), origin=ORIGIN)
    with pytest.raises(bundle_verifier.BundleError, match="signature is invalid"):
        bundle_verifier.open_checkpoint(forged, bundle_verifier.parse_key(key))


def test_keys_of_another_type_curve_or_id_are_refused() -> None:
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    spki = k1.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    wrong_curve = f"{ORIGIN}+{hashlib.sha256(spki).digest()[:4].hex()}+" + (
        base64.b64encode(b"\x02" + spki).decode()
    )
    with pytest.raises(VerificationError, match="P-256, P-384 or P-521"):
        NoteVerifier.from_verifier_key(wrong_curve)
    with pytest.raises(bundle_verifier.BundleError, match="P-256, P-384 or P-521"):
        bundle_verifier.parse_key(wrong_curve)
    wrong_id = "rekor.sigstore.dev+c0d23d6b+" + REKOR.split("+", 2)[2]
    with pytest.raises(VerificationError, match="does not match"):
        NoteVerifier.from_verifier_key(wrong_id)
    with pytest.raises(bundle_verifier.BundleError, match="does not match"):
        bundle_verifier.parse_key(wrong_id)
    cosigner = REKOR.split("+", 2)
    type_4 = f"{cosigner[0]}+{cosigner[1]}+" + base64.b64encode(b"\x04" + b"\0" * 32).decode()
    with pytest.raises(VerificationError, match="not an Ed25519 or ECDSA"):
        NoteVerifier.from_verifier_key(type_4)


def test_a_p384_key_verifies_with_sha256_as_the_type_defines() -> None:
    signer = NoteSigner(ORIGIN, SoftwareEcdsaKey(ec.SECP384R1()))
    note = sign_checkpoint(BODY, signer)
    parsed = NoteVerifier.from_verifier_key(signer.verifier().verifier_key())
    assert verify_checkpoint(note, parsed, origin=ORIGIN) == BODY


def test_a_handover_note_carries_both_keys_and_each_verifies_it() -> None:
    old = NoteSigner.generate(ORIGIN)
    new = NoteSigner(ORIGIN, SoftwareEcdsaKey())
    note = sign_checkpoint(BODY, NoteSigner(ORIGIN, old.private_key, also=new))

    assert [s.key_id for s in parse_note(note).signatures] == [old.key_id, new.key_id]
    for signer in (old, new):
        assert verify_checkpoint(note, signer.verifier(), origin=ORIGIN) == BODY
        key = bundle_verifier.parse_key(signer.verifier().verifier_key())
        assert bundle_verifier.open_checkpoint(note, key)[1] == 7
