"""Telephone number detector: international (E.164-ish) and common national formats.

What counts as a phone number (and what does not):

- international: ``+`` or ``00``, a country code, then digit groups separated by single
  spaces, dots, dashes or slashes, optionally ``(0)`` or an area code in parentheses:
  ``+49 (0)30 1234567``, ``+1 (415) 555-2671``, ``0033 1 23 45 67 89``;
  7 to 15 digits after the prefix (ITU-T E.164 allows at most 15);
- national with a trunk ``0``: ``030 1234567``, ``(030) 123 456 78``, ``020 7946 0958``,
  ``06 12 34 56 78``; 9 to 12 digits and at least one separator or parenthesis;
- North American: ``(415) 555-2671``, ``415-555-2671``, ``1-800-555-0199`` with the
  NANP rules (area code and exchange start with 2-9).

A space may also be a no-break, narrow no-break or thin space. Japanese, Chinese or
Korean text right before or after a number is a boundary (``電話番号は+81 3 1234 5678まで``);
a Latin letter or digit there is not.

Not matched: bare digit runs without ``+`` (order numbers, amounts, years, IDs),
dates such as ``01.02.2024`` or ``2024-01-02``, times, version numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.egress.detectors.base import Span
from appliance.egress.detectors.boundaries import DIGIT, GROUP_SPACE, GROUP_SPACES, WORD
from appliance.egress.levels import Classification

__all__ = ["PhoneDetector"]

_S = GROUP_SPACE
_SEP = rf"(?:[{GROUP_SPACES}.\-/]|{_S}?\(0\){_S}?|{_S}?\(\d{{1,5}}\){_S}?)"
_START = rf"(?<!{WORD})(?<![+.,/-])"
_END = rf"(?!{WORD})(?![.,/-]?{DIGIT})"

# Possessive throughout: each candidate is consumed once, never re-split on failure.
_INTERNATIONAL = re.compile(_START + r"(?:\+|00)(?=[1-9])[0-9]++(?:" + _SEP + r"[0-9]++)*+" + _END)
_NATIONAL = re.compile(
    _START + rf"(?:\(0[1-9][0-9]{{0,4}}\){_S}?|0(?=[1-9]))[0-9]*+(?:{_SEP}[0-9]++)*+" + _END
)
_NANP_SEP = rf"[{GROUP_SPACES}.-]"
_NANP = re.compile(
    _START
    + rf"(?:1{_NANP_SEP})?(?:\([2-9][0-9]{{2}}\){_S}?|[2-9][0-9]{{2}}{_NANP_SEP})"
    + rf"[2-9][0-9]{{2}}{_NANP_SEP}[0-9]{{4}}"
    + _END
)
_DATE = re.compile(r"\(?\d{1,2}[./-]\d{1,2}[./-](?:19|20)\d{2}(?!\d)")


def _digits(value: str) -> int:
    return sum(ch.isdigit() for ch in value)


def _international_ok(value: str) -> bool:
    count = _digits(value) - (2 if value.startswith("00") else 0)
    return 7 <= count <= 15


def _national_ok(value: str) -> bool:
    has_separator = any(not ch.isdigit() for ch in value)
    return 9 <= _digits(value) <= 12 and has_separator and _DATE.match(value) is None


@dataclass(frozen=True, slots=True)
class PhoneDetector:
    name: str = "phone"
    label: str = "PHONE"
    level: Classification = Classification.INTERNAL

    def find(self, text: str) -> Iterator[Span]:
        for match in _INTERNATIONAL.finditer(text):
            if _international_ok(match.group()):
                yield match.span()
        for match in _NATIONAL.finditer(text):
            if _national_ok(match.group()):
                yield match.span()
        for match in _NANP.finditer(text):
            yield match.span()
