"""appliance/audit/receipts.py: the receipt note, its wire encoding, and what a
verifier refuses."""

from __future__ import annotations

import hashlib

import pytest

from appliance.audit.checkpoint import NoteSigner, parse_checkpoint, parse_note, sign_note
from appliance.audit.receipts import (
    Receipt,
    ReceiptLeaf,
    decode_receipt,
    encode_receipt,
    receipt_text,
    verify_receipt,
)
from appliance.errors import VerificationError

ORIGIN = "appliance.test/audit"
RECEIPT = Receipt(
    origin=ORIGIN,
    request_id="req-0123456789",
    request=ReceiptLeaf(41, hashlib.sha256(b"request").digest()),
    completion=ReceiptLeaf(44, hashlib.sha256(b"completion").digest()),
)


def test_the_text_names_both_leaves_and_is_never_a_checkpoint() -> None:
    text = receipt_text(RECEIPT)
    assert text.splitlines() == [
        "appliance.receipt/v1",
        ORIGIN,
        "request-id req-0123456789",
        "request 41 " + "H1i5FFsk0QjXrDiIcziz6jIpgzucHkGCUDQ/kHv9EEc=",
        "completion 44 " + "IWBrWDfuSRceVs/yr+IQg/tN/lwVx5tUaVwtwzUYHIk=",
    ]
    with pytest.raises(VerificationError):
        parse_checkpoint(text)
    with pytest.raises(ValueError):
        receipt_text(Receipt(ORIGIN, "two words", RECEIPT.request, RECEIPT.completion))


def test_signed_encoded_and_verified() -> None:
    signer = NoteSigner.generate(ORIGIN)
    header = encode_receipt(sign_note(receipt_text(RECEIPT), signer))
    assert header.isascii() and "=" not in header and "\n" not in header
    assert verify_receipt(decode_receipt(header), signer.verifier(), origin=ORIGIN) == RECEIPT


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda note: note.replace("completion 44", "completion 45"), "invalid signature"),
        (lambda note: note.replace("\u2014 ", "\u2014 x", 1), "no signature"),
    ],
)
def test_a_changed_receipt_fails(change, words: str) -> None:  # type: ignore[no-untyped-def]
    signer = NoteSigner.generate(ORIGIN)
    note = sign_note(receipt_text(RECEIPT), signer)
    with pytest.raises(VerificationError, match=words):
        verify_receipt(change(note), signer.verifier(), origin=ORIGIN)


def test_another_key_origin_or_kind_fails() -> None:
    signer = NoteSigner.generate(ORIGIN)
    note = sign_note(receipt_text(RECEIPT), signer)
    with pytest.raises(VerificationError):
        verify_receipt(note, NoteSigner.generate(ORIGIN).verifier(), origin=ORIGIN)
    other = NoteSigner.generate("other.test/audit")
    moved = Receipt("other.test/audit", "r-12345678", RECEIPT.request, RECEIPT.completion)
    foreign = sign_note(receipt_text(moved), other)
    with pytest.raises(VerificationError, match="origin"):
        verify_receipt(foreign, other.verifier(), origin=ORIGIN)
    checkpoint = sign_note(f"{ORIGIN}\n5\n{'A' * 43}=\n", signer)
    with pytest.raises(VerificationError, match=r"not an appliance\.receipt"):
        verify_receipt(checkpoint, signer.verifier(), origin=ORIGIN)
    assert parse_note(note).signatures[0].name == ORIGIN


def test_malformed_wire_values() -> None:
    with pytest.raises(VerificationError, match="base64url"):
        decode_receipt("not*base64")
    with pytest.raises(VerificationError, match="base64url"):
        decode_receipt(encode_receipt("x")[:-1] + "\udcff")
