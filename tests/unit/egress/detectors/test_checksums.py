"""appliance/egress/detectors/checksums.py: published values and Hypothesis properties
(a computed check digit validates; every single-digit substitution is caught)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.egress.detectors.checksums import (
    bsn_11_proof,
    iban_mod97,
    iso7064_mod11_10,
    luhn,
    nir_key_valid,
)

digits = st.text(alphabet="0123456789", min_size=1, max_size=30)


def luhn_check_digit(body: str) -> str:
    return next(d for d in "0123456789" if luhn(body + d))


def mod97_check_digits(country: str, bban: str) -> str:
    rearranged = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(rearranged) % 97:02d}"


def substitutions(value: str) -> list[str]:
    return [
        value[:i] + ch + value[i + 1 :]
        for i in range(len(value))
        for ch in "0123456789"
        if ch != value[i]
    ]


@pytest.mark.parametrize(
    ("function", "value", "expected"),
    [
        (luhn, "79927398713", True),  # the classic example of ISO/IEC 7812-1 Annex B
        (luhn, "79927398710", False),
        (luhn, "", False),
        (luhn, "12a4", False),
        (luhn, "٤١١١١١١١١١١١١١١١", False),  # Arabic-Indic digits are not card digits
        (iban_mod97, "DE89370400440532013000", True),
        (iban_mod97, "de89370400440532013000", True),
        (iban_mod97, "DE88370400440532013000", False),
        (iban_mod97, "DE89-3704", False),
        (iso7064_mod11_10, "36574261809", True),
        (iso7064_mod11_10, "36574261890", False),
        (iso7064_mod11_10, "3", False),
        (nir_key_valid, "295109912611193", True),
        (nir_key_valid, "253072B07300470", True),
        (nir_key_valid, "253072a07300443", True),
        (nir_key_valid, "2951099126111", False),
        (bsn_11_proof, "111222333", True),
        (bsn_11_proof, "111252333", False),
        (bsn_11_proof, "000000000", False),
        (bsn_11_proof, "12345672", True),  # 8 digits, read as 012345672
    ],
)
def test_known_values(function: object, value: str, expected: bool) -> None:
    assert callable(function)
    assert function(value) is expected


@given(digits)
def test_luhn_check_digit_validates_and_catches_every_substitution(body: str) -> None:
    number = body + luhn_check_digit(body)
    assert luhn(number)
    assert not any(luhn(mutant) for mutant in substitutions(number))


@given(
    st.sampled_from(["DE", "GB", "FR", "NL"]),
    st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=10, max_size=30),
)
def test_mod97_check_digits_validate_and_catch_every_substitution(country: str, bban: str) -> None:
    iban = country + mod97_check_digits(country, bban) + bban
    assert iban_mod97(iban)
    # MOD 97-10 catches every substitution of one digit by another (97 is prime and
    # divides no (d' - d) * 10^k).
    mutants = [
        iban[:i] + d + iban[i + 1 :]
        for i in range(2, len(iban))
        if iban[i].isdigit()
        for d in "0123456789"
        if d != iban[i]
    ]
    assert not any(iban_mod97(mutant) for mutant in mutants)


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_mod11_10_has_exactly_one_check_digit(body: str) -> None:
    assert sum(iso7064_mod11_10(body + d) for d in "0123456789") == 1


@given(st.integers(min_value=1, max_value=10**13 - 1))
def test_nir_key_round_trip(body: int) -> None:
    text = f"{body:013d}"
    key = f"{97 - body % 97:02d}"
    assert nir_key_valid(text + key)
    assert not nir_key_valid(text + f"{(int(key) % 97) + 1:02d}")
