"""appliance/audit/envelope.py: AES-256-GCM content envelopes bound to their metadata."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audit.envelope import Envelope, open_envelope, seal
from appliance.errors import VerificationError

KEY = os.urandom(32)


def test_round_trip_and_fresh_data_key_per_record() -> None:
    first = seal(b"prompt", associated_data=b"meta", subject_key=KEY, key_id="k1")
    second = seal(b"prompt", associated_data=b"meta", subject_key=KEY, key_id="k1")
    assert first != second
    assert Envelope.from_bytes(first).wrapped_dek != Envelope.from_bytes(second).wrapped_dek
    assert open_envelope(first, associated_data=b"meta", subject_key=KEY) == b"prompt"
    assert b"prompt" not in first
    assert Envelope.from_bytes(first).key_id == "k1"
    assert Envelope.from_bytes(first).to_bytes() == first


def test_changed_metadata_does_not_open() -> None:
    blob = seal(b"prompt", associated_data=b"meta", subject_key=KEY, key_id="k1")
    with pytest.raises(VerificationError, match="altered"):
        open_envelope(blob, associated_data=b"meta2", subject_key=KEY)


def test_other_subject_key_does_not_open() -> None:
    blob = seal(b"prompt", associated_data=b"meta", subject_key=KEY, key_id="k1")
    with pytest.raises(VerificationError, match="unwrap"):
        open_envelope(blob, associated_data=b"meta", subject_key=os.urandom(32))


def test_flipped_ciphertext_bit_does_not_open() -> None:
    blob = bytearray(seal(b"prompt", associated_data=b"m", subject_key=KEY, key_id="k1"))
    blob[-1] ^= 1
    with pytest.raises(VerificationError):
        open_envelope(bytes(blob), associated_data=b"m", subject_key=KEY)


@pytest.mark.parametrize("blob", [b"", b"\x02abc", b"\x01\x02k1" + b"\x00" * 10])
def test_malformed_envelopes(blob: bytes) -> None:
    with pytest.raises(VerificationError):
        Envelope.from_bytes(blob)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048), st.binary(max_size=256), st.binary(min_size=1, max_size=8))
def test_sealed_content_opens_only_with_its_metadata(
    plaintext: bytes, metadata: bytes, extra: bytes
) -> None:
    blob = seal(plaintext, associated_data=metadata, subject_key=KEY, key_id="k")
    assert open_envelope(blob, associated_data=metadata, subject_key=KEY) == plaintext
    with pytest.raises(VerificationError):
        open_envelope(blob, associated_data=metadata + extra, subject_key=KEY)
