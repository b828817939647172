"""Payment card detector: 13-19 digits, a single space (or a no-break, narrow no-break or
thin space) or dash allowed between digits, an issuer (IIN) prefix with a length that
issuer uses, and the Luhn check.

A run of digit groups longer than a card (a card followed by a year, an order number
before it) is searched window by window on group boundaries, longest window first.
IIN ranges: ISO/IEC 7812 registrations as published by the networks (Visa, Mastercard
incl. the 2-series, American Express, Discover, Diners Club, JCB, UnionPay, Maestro,
Mir, RuPay).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.egress.detectors.base import Span
from appliance.egress.detectors.boundaries import (
    GROUP_SPACES,
    NUMBER_END,
    NUMBER_START,
    drop_group_spaces,
)
from appliance.egress.detectors.checksums import luhn
from appliance.egress.levels import Classification

__all__ = ["CardDetector", "card_brand", "is_valid_card"]

_ANY = frozenset(range(16, 20))
_MAESTRO = frozenset(range(13, 20))
_DINERS = frozenset(range(14, 20))

# (brand, lowest prefix, highest prefix, lengths); prefixes compare as equal-length strings.
_IIN_RANGES: tuple[tuple[str, str, str, frozenset[int]], ...] = (
    ("visa", "4", "4", frozenset({13, 16, 19})),
    ("mastercard", "51", "55", frozenset({16})),
    ("mastercard", "2221", "2720", frozenset({16})),
    ("amex", "34", "34", frozenset({15})),
    ("amex", "37", "37", frozenset({15})),
    ("discover", "6011", "6011", _ANY),
    ("discover", "644", "649", _ANY),
    ("discover", "65", "65", _ANY),
    ("discover", "622126", "622925", _ANY),
    ("diners", "300", "305", _DINERS),
    ("diners", "3095", "3095", _DINERS),
    ("diners", "36", "36", _DINERS),
    ("diners", "38", "39", _DINERS),
    ("jcb", "3528", "3589", _ANY),
    ("unionpay", "62", "62", _ANY),
    ("maestro", "50", "50", _MAESTRO),
    ("maestro", "56", "58", _MAESTRO),
    ("maestro", "639", "639", _MAESTRO),
    ("maestro", "67", "67", _MAESTRO),
    ("mir", "2200", "2204", _ANY),
    ("rupay", "60", "60", frozenset({16})),
    ("rupay", "81", "82", frozenset({16})),
    ("rupay", "508", "508", frozenset({16})),
)

# A run of digit groups; possessive, so a failed run is never re-split by the engine.
_RUN = re.compile(f"{NUMBER_START}[0-9]++(?:[{GROUP_SPACES}-][0-9]++)*+{NUMBER_END}")
_GROUP = re.compile(r"[0-9]+")
_MIN_DIGITS, _MAX_DIGITS = 13, 19


def card_brand(digits: str) -> str | None:
    """The network whose IIN range and lengths fit ``digits`` (no separators), or None."""
    for brand, low, high, lengths in _IIN_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return brand
    return None


def _lengths_for_prefix(prefix: str) -> frozenset[int]:
    """Every card length an issuer uses for numbers starting with ``prefix`` (6 digits)."""
    lengths: set[int] = set()
    for _, low, high, allowed in _IIN_RANGES:
        if low <= prefix[: len(low)] <= high:
            lengths |= allowed
    return frozenset(lengths)


def is_valid_card(value: str) -> bool:
    """A plausible card number: 13-19 digits, a known IIN for that length, Luhn."""
    digits = drop_group_spaces(value).replace("-", "")
    return (
        _MIN_DIGITS <= len(digits) <= _MAX_DIGITS
        and digits.isascii()
        and digits.isdigit()
        and card_brand(digits) is not None
        and luhn(digits)
    )


@dataclass(frozen=True, slots=True)
class CardDetector:
    name: str = "payment_card"
    label: str = "CARD"
    level: Classification = Classification.CONFIDENTIAL

    def find(self, text: str) -> Iterator[Span]:
        for run in _RUN.finditer(text):
            groups = [(m.start(), m.end(), m.group()) for m in _GROUP.finditer(text, *run.span())]
            yield from _cards_in_groups(groups)


def _cards_in_groups(groups: list[tuple[int, int, str]]) -> Iterator[Span]:
    """Cards in one run of digit groups: from each group, the longest window of whole
    groups that is a valid card; the search resumes after a found card. At most 19
    digits per window and the issuer prefix checked once per start keep it linear."""
    first = 0
    while first < len(groups):
        last = _longest_card_from(groups, first)
        if last is None:
            first += 1
            continue
        yield groups[first][0], groups[last][1]
        first = last + 1


def _longest_card_from(groups: list[tuple[int, int, str]], first: int) -> int | None:
    windows: list[tuple[int, str]] = []
    digits = ""
    for last in range(first, len(groups)):
        digits += groups[last][2]
        if len(digits) > _MAX_DIGITS:
            break
        if len(digits) >= _MIN_DIGITS:
            windows.append((last, digits))
    if not windows:
        return None
    lengths = _lengths_for_prefix(windows[0][1][:6])
    for last, number in reversed(windows):
        if len(number) in lengths and luhn(number):
            return last
    return None
