"""Pure check-digit algorithms behind the detectors; each takes a string, returns a bool.

Inputs are already normalised (separators removed) by the caller; anything that is not
the expected alphabet is simply invalid, never an exception.

References:
- ISO 13616-1:2020 §6 / ISO 7064 MOD 97-10: IBAN check digits;
- ISO/IEC 7812-1 Annex B: the Luhn formula of payment card numbers;
- ISO 7064 MOD 11,10: the check digit of the German Steuer-ID (BZSt);
- INSEE: the NIR key, ``97 - (first 13 digits mod 97)``, Corsica 2A/2B counted as 19/18;
- the Dutch "elfproef" (11-proof) of the Burgerservicenummer.
"""

from __future__ import annotations

__all__ = [
    "bsn_11_proof",
    "iban_mod97",
    "iso7064_mod11_10",
    "luhn",
    "nir_key_valid",
]


def _is_ascii_digits(value: str) -> bool:
    # str.isdigit() accepts other scripts' digits and superscripts; check digits are ASCII.
    return value.isascii() and value.isdigit()


def iban_mod97(iban: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters -> 10..35,
    and the number must be 1 modulo 97. ``iban`` is compact (no spaces), any case."""
    value = iban.upper()
    if len(value) < 5 or not value.isascii() or not value.isalnum():
        return False
    rearranged = value[4:] + value[:4]
    # int(ch, 36) maps 0-9 to 0-9 and A-Z to 10-35, exactly the ISO 13616 letter table.
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # 2*d, minus 9 when that exceeds 9


def luhn(number: str) -> bool:
    """ISO/IEC 7812 Luhn: double every second digit from the right; the sum ends in 0."""
    if not _is_ascii_digits(number):
        return False
    digits = [ord(ch) - 48 for ch in reversed(number)]
    total = sum(digits[0::2]) + sum(_LUHN_DOUBLED[d] for d in digits[1::2])
    return total % 10 == 0


def iso7064_mod11_10(number: str) -> bool:
    """ISO 7064 MOD 11,10 (hybrid system): run the product/sum over every digit, the
    check digit included; the number is valid when the final sum is 1 modulo 10."""
    if not _is_ascii_digits(number) or len(number) < 2:
        return False
    product = 10
    for ch in number[:-1]:
        total = (ord(ch) - 48 + product) % 10 or 10
        product = (total * 2) % 11
    return (product + ord(number[-1]) - 48) % 10 == 1


def nir_key_valid(nir: str) -> bool:
    """French NIR: 13 characters then a 2-digit key equal to ``97 - (n mod 97)``.

    The department (characters 6-7) may be ``2A`` or ``2B`` (Corsica), counted as 19 and
    18 for the key. ``nir`` is compact: 15 characters.
    """
    value = nir.upper()
    if len(value) != 15:
        return False
    body, key = value[:13], value[13:]
    department = body[5:7]
    if department == "2A":
        body = body[:5] + "19" + body[7:]
    elif department == "2B":
        body = body[:5] + "18" + body[7:]
    if not _is_ascii_digits(body) or not _is_ascii_digits(key):
        return False
    return 97 - int(body) % 97 == int(key)


def bsn_11_proof(bsn: str) -> bool:
    """Dutch BSN "elfproef": ``9*d1 + 8*d2 + ... + 2*d8 - 1*d9`` is a multiple of 11
    (and the number is not zero). ``bsn`` is 9 digits (8-digit ones are zero-padded)."""
    if not _is_ascii_digits(bsn) or len(bsn) not in (8, 9):
        return False
    value = bsn.zfill(9)
    if int(value) == 0:
        return False
    total = sum((9 - i) * (ord(ch) - 48) for i, ch in enumerate(value[:8])) - (ord(value[8]) - 48)
    return total % 11 == 0
