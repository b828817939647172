"""Word boundaries and group separators shared by the detectors, so a match never starts
or ends inside a longer number or word (``12.4111...``, ``4111...abc``, ``ref-111222333``)
yet is found when written straight against Japanese, Chinese or Korean text
(``カード番号4242424242424242で``).

Scripts written without spaces between words (CJK ideographs, kana, Hangul, full-width
forms) cannot mark where a word ends, so each of their characters counts as a boundary:
a "word character" here is a letter, digit or ``_`` of any *other* script. Python's
``\\w`` alone counts kanji as letters and would glue the value to the sentence around it.
"""

from __future__ import annotations

import re

__all__ = [
    "DIGIT",
    "GROUP_SPACE",
    "GROUP_SPACES",
    "NUMBER_END",
    "NUMBER_START",
    "UNSPACED",
    "WORD",
    "drop_group_spaces",
    "is_unspaced",
    "is_word_char",
]

UNSPACED = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u2e80-\u2fff"  # CJK and Kangxi radicals, ideographic description characters
    "\u3000-\u9fff"  # CJK symbols and punctuation, kana, bopomofo, Hangul compatibility
    #                  Jamo, enclosed and compatibility CJK, ideographs and extension A
    "\ua960-\ua97f"  # Hangul Jamo extended-A
    "\uac00-\ud7ff"  # Hangul syllables, Hangul Jamo extended-B
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms
    "\uff00-\uffef"  # half-width and full-width forms
    "\U00020000-\U0003ffff"  # ideograph extensions B-H, compatibility supplement
)
"""Body of a character class: the scripts written without spaces between words."""

WORD = rf"[^\W{UNSPACED}]"
"""A word character of a script that spaces its words (Latin, Cyrillic, digits, ``_``)."""

DIGIT = rf"[^\D{UNSPACED}]"
"""A digit other than a full-width one."""

GROUP_SPACES = " \u00a0\u202f\u2009"
"""What may separate the groups of a printed number where a space may: a space, and the
no-break, narrow no-break and thin spaces that typesetting (French above all) puts there."""

GROUP_SPACE = f"[{GROUP_SPACES}]"
"""One of :data:`GROUP_SPACES`, as a regular expression."""

_UNSPACED_CHAR = re.compile(f"[{UNSPACED}]")
_NO_GROUP_SPACES = str.maketrans("", "", GROUP_SPACES)

NUMBER_START = rf"(?<!{WORD})(?<!{DIGIT}[.,/-])"
"""Not preceded by a word character, nor by a digit and a separator."""

NUMBER_END = rf"(?!{WORD})(?![.,/-]{DIGIT})"
"""Not followed by a word character, nor by a separator and a digit."""


def is_unspaced(ch: str) -> bool:
    """Whether ``ch`` belongs to a script written without spaces between words."""
    return _UNSPACED_CHAR.match(ch) is not None


def is_word_char(ch: str) -> bool:
    """Whether ``ch`` is a :data:`WORD` character, for code that walks a text itself."""
    return (ch.isalnum() or ch == "_") and not is_unspaced(ch)


def drop_group_spaces(value: str) -> str:
    """``value`` without any of :data:`GROUP_SPACES`."""
    return value.translate(_NO_GROUP_SPACES)
