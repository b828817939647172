"""appliance/audit/cosignature.py against C2SP tlog-cosignature v1 (Ed25519)."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest

from appliance.audit.checkpoint import Checkpoint, NoteSigner, parse_note, sign_checkpoint
from appliance.audit.cosignature import (
    Cosigner,
    CosignerVerifier,
    cosigned_message,
    verify_cosignature,
)
from appliance.errors import VerificationError

CHECKPOINT = Checkpoint("example.com/behind-the-sofa", 20852163, bytes(range(32)))
BODY = CHECKPOINT.body()


def test_the_signed_message_is_the_specs() -> None:
    # tlog-cosignature "Ed25519 signed message": header line, time line, whole body.
    assert cosigned_message(BODY, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + BODY.encode()
    )
    with pytest.raises(ValueError):
        cosigned_message(BODY, 2**63)


def test_key_id_uses_type_0x04_and_the_line_carries_the_timestamp() -> None:
    witness = Cosigner.generate("witness.example/w1")
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + witness.public_key).digest()[:4]
    assert witness.key_id == expected
    line = witness.cosign(BODY, 1679315147)
    assert line.startswith("\u2014 witness.example/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[-1])
    assert raw[:4] == expected and len(raw) == 4 + 8 + 64
    assert struct.unpack(">Q", raw[4:12]) == (1679315147,)
    witness.verifier().public_key.verify(raw[12:], cosigned_message(BODY, 1679315147))


def _cosigned(witness: Cosigner, timestamp: int = 1700000000) -> str:
    log = NoteSigner.generate("example.com/behind-the-sofa")
    note = sign_checkpoint(
        Checkpoint("example.com/behind-the-sofa", 20852163, bytes(range(32))), log
    )
    return note + witness.cosign(BODY, timestamp)


def test_verify_finds_the_witness_among_other_signatures() -> None:
    witness = Cosigner.generate("witness.example/w1")
    other = Cosigner.generate("witness.example/w2")
    note = _cosigned(witness) + other.cosign(BODY, 5)
    assert verify_cosignature(note, witness.verifier()) == 1700000000
    assert verify_cosignature(parse_note(note), other.verifier()) == 5


@pytest.mark.parametrize(
    "tamper",
    [
        lambda note: note.replace("20852163", "20852164"),  # another size
        lambda note: note[:-20] + "A" * 19 + "\n",  # signature bytes
    ],
)
def test_a_changed_note_or_signature_fails(tamper) -> None:  # type: ignore[no-untyped-def]
    witness = Cosigner.generate("witness.example/w1")
    with pytest.raises(VerificationError):
        verify_cosignature(tamper(_cosigned(witness)), witness.verifier())


def test_a_changed_timestamp_fails() -> None:
    witness = Cosigner.generate("witness.example/w1")
    note = _cosigned(witness, 1700000000)
    head, _, line = note.rstrip("\n").rpartition("\n")
    name, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[4:12] = struct.pack(">Q", 1700000001)
    forged = f"{head}\n{name} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(VerificationError, match="invalid cosignature"):
        verify_cosignature(forged, witness.verifier())


def test_no_cosignature_by_that_witness() -> None:
    note = _cosigned(Cosigner.generate("witness.example/w1"))
    with pytest.raises(VerificationError, match="no cosignature by witness"):
        verify_cosignature(note, Cosigner.generate("witness.example/w1").verifier())


def test_keys_round_trip_and_a_log_key_is_not_a_cosigner_key() -> None:
    witness = Cosigner.generate("witness.example/w1")
    again = Cosigner.from_signer_key(witness.signer_key())
    assert again.public_key == witness.public_key
    vkey = witness.verifier().verifier_key()
    assert CosignerVerifier.from_verifier_key(vkey).key_id == witness.key_id
    log_vkey = NoteSigner.generate("witness.example/w1").verifier().verifier_key()  # type 0x01
    with pytest.raises(VerificationError, match="0x04"):
        CosignerVerifier.from_verifier_key(log_vkey)
    with pytest.raises(VerificationError):
        CosignerVerifier.from_verifier_key(vkey[:-4] + "AAA=")
