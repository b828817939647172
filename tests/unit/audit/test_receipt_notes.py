"""appliance/audit/receipts.py: the receipt note, its wire encoding, the answer
commitment, and what a verifier refuses."""

from __future__ import annotations

import base64
import hashlib

import pytest

from appliance.audit.checkpoint import NoteSigner, parse_checkpoint, parse_note, sign_note
from appliance.audit.receipts import (
    Receipt,
    ReceiptLeaf,
    answer_digest,
    answer_message,
    check_answer,
    commit_answer,
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


SALT = bytes(range(32))


def test_the_answer_line_commits_to_the_texts_under_a_salt() -> None:
    commitment = commit_answer(["Tokyo"], SALT)
    assert commitment.digest == hashlib.sha256(SALT + b'["Tokyo"]').digest()
    receipt = Receipt(ORIGIN, RECEIPT.request_id, RECEIPT.request, RECEIPT.completion, commitment)
    lines = receipt_text(receipt).splitlines()
    assert lines[:5] == receipt_text(RECEIPT).splitlines()  # older receipts: the same five
    assert lines[5] == (
        "answer AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= "
        + base64.b64encode(commitment.digest).decode()
    )
    signer = NoteSigner.generate(ORIGIN)
    note = sign_note(receipt_text(receipt), signer)
    assert verify_receipt(note, signer.verifier(), origin=ORIGIN) == receipt
    check_answer(receipt, ["Tokyo"])
    for wrong in (["Tokio"], ["Tokyo", ""], [], ["Tokyo "]):
        with pytest.raises(VerificationError, match=r"^answer text: not the answer"):
            check_answer(receipt, wrong)
    with pytest.raises(VerificationError, match="cannot be checked"):
        check_answer(RECEIPT, ["Tokyo"])  # a receipt from before commitments
    with pytest.raises(ValueError, match="32 bytes"):
        commit_answer(["Tokyo"], b"short")


def test_the_canonical_answer_is_a_jcs_array_of_the_choice_texts() -> None:
    # RFC 8785: no whitespace, UTF-8 as is, only quote, backslash and controls escaped.
    assert answer_message([]) == b"[]"
    assert answer_message(["one", "two"]) == b'["one","two"]'
    assert answer_message(['a"b\\c\n\x01\x7f']) == b'["a\\"b\\\\c\\n\\u0001\x7f"]'
    assert answer_message(["é 日本 😀"]) == '["é 日本 😀"]'.encode()
    assert answer_digest(SALT, ["a"]) != answer_digest(bytes(32), ["a"])  # the salt counts


@pytest.mark.parametrize(
    "line",
    ["answer", "answer AAAA AAAA", "answer !!! " + "A" * 44, "answr " + "A" * 44 + " " + "A" * 44],
)
def test_a_malformed_answer_line_is_refused(line: str) -> None:
    signer = NoteSigner.generate(ORIGIN)
    note = sign_note(receipt_text(RECEIPT) + line + "\n", signer)
    with pytest.raises(VerificationError, match="malformed receipt"):
        verify_receipt(note, signer.verifier(), origin=ORIGIN)
