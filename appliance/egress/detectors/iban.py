"""IBAN detector: ISO 13616 structure, the registry length of the country, and the
MOD 97-10 check digits.

Accepted forms: compact (``DE89370400440532013000``) and the printed form in groups of
four separated by single spaces (``DE89 3704 0044 0532 0130 00``), either case; a
no-break, narrow no-break or thin space may stand for any of those spaces.
Lengths: the SWIFT IBAN Registry, for every SEPA country and the other
registered countries listed below; a country not in the table is not detected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from appliance.egress.detectors.base import Span
from appliance.egress.detectors.boundaries import GROUP_SPACE, drop_group_spaces
from appliance.egress.detectors.checksums import iban_mod97
from appliance.egress.levels import Classification

__all__ = ["IBAN_LENGTHS", "IbanDetector", "is_valid_iban"]

# Total IBAN length per ISO 3166 country code (SWIFT IBAN Registry).
IBAN_LENGTHS: Mapping[str, int] = MappingProxyType(
    {
        # SEPA: EU, EEA, Switzerland, the UK and the small states with SEPA access.
        "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
        "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27,
        "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
        "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
        "SE": 24, "SI": 19, "SK": 24, "SM": 27, "VA": 22,
        # Other IBAN countries.
        "AE": 23, "AL": 28, "AZ": 28, "BA": 20, "BH": 22, "BR": 29, "BY": 28, "CR": 22,
        "DO": 28, "EG": 29, "FO": 18, "GE": 22, "GL": 18, "GT": 28, "IL": 23, "IQ": 23,
        "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "MD": 24, "ME": 22, "MK": 19,
        "MR": 27, "MU": 30, "PK": 24, "PS": 29, "QA": 29, "RS": 22, "SA": 24, "SC": 31,
        "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
    }
)  # fmt: skip

_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}")
_ALNUM = "[A-Za-z0-9]"


def _bban_pattern(length: int) -> re.Pattern[str]:
    """Compact, or groups of four after a space (the first group follows the check digits)."""
    groups, rest = divmod(length, 4)
    spaced = f"(?:{GROUP_SPACE}{_ALNUM}{{4}}){{{groups}}}"
    if rest:
        spaced += f"{GROUP_SPACE}{_ALNUM}{{{rest}}}"
    return re.compile(f"(?:{_ALNUM}{{{length}}}|{spaced})(?!{_ALNUM})")


_BBAN = MappingProxyType({n - 4: _bban_pattern(n - 4) for n in set(IBAN_LENGTHS.values())})


def is_valid_iban(value: str) -> bool:
    """A compact or printed IBAN with a known country, its registry length and valid
    check digits."""
    compact = drop_group_spaces(value).upper()
    length = IBAN_LENGTHS.get(compact[:2])
    return length is not None and len(compact) == length and iban_mod97(compact)


@dataclass(frozen=True, slots=True)
class IbanDetector:
    name: str = "iban"
    label: str = "IBAN"
    level: Classification = Classification.CONFIDENTIAL

    def find(self, text: str) -> Iterator[Span]:
        for start in _START.finditer(text):
            length = IBAN_LENGTHS.get(start.group()[:2].upper())
            if length is None:
                continue
            bban = _BBAN[length - 4].match(text, start.end())
            if bban is None:
                continue
            if is_valid_iban(text[start.start() : bban.end()]):
                yield start.start(), bban.end()
