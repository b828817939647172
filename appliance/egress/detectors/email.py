"""E-mail address detector: a dot-atom local part (RFC 5322 §3.4.1, unquoted) of at
most 64 characters, ``@``, and a DNS domain of at least two labels whose last label (the
TLD) is alphabetic or an IDNA ``xn--`` label.

Found by a possessive pattern and checked in Python, so the work is linear in the text.
A trailing dot or hyphen (end of a sentence) and a leading apostrophe (a quotation
mark) are left out of the span.

Japanese, Chinese and Korean prose has no space around an address
(``連絡先はtanaka.taro@example.jpです``), so a character of those scripts ends the local
part and the domain like a space would. A local part written in those scripts
(RFC 6531, ``田中@example.jp``) cannot be told apart from the sentence before it: it is
taken whole, up to 64 characters, over-matching rather than letting it out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.egress.detectors.base import Span
from appliance.egress.detectors.boundaries import UNSPACED, WORD
from appliance.egress.levels import Classification

__all__ = ["EmailDetector", "is_valid_email"]

_LOCAL = rf"(?:{WORD}|[.%+'-])"  # a local-part character of a spaced script
_CANDIDATE = re.compile(
    rf"(?<!{_LOCAL})(?P<local>"
    # Latin, digits and the like: a CJK character before it is a boundary, so the
    # address starts after the sentence (連絡先はtanaka.taro@...).
    rf"{_LOCAL}{{1,64}}+"
    # Ending in a CJK character (RFC 6531, 田中@...): the whole run of word characters,
    # as no boundary can be seen; a run ending in Latin is left to the branch above.
    rf"|[\w.%+'-]{{1,64}}+(?<=[{UNSPACED}])"
    rf")@(?P<domain>[A-Za-z0-9.-]{{1,253}}+)(?!{WORD}|@)"
)
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TLD = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")


def _valid_local(local: str) -> bool:
    return not (local.startswith(".") or local.endswith(".") or ".." in local)


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and all(_LABEL.fullmatch(label) for label in labels)
        and _TLD.fullmatch(labels[-1]) is not None
    )


def is_valid_email(value: str) -> bool:
    local, at, domain = value.rpartition("@")
    return bool(at) and 0 < len(local) <= 64 and _valid_local(local) and _valid_domain(domain)


@dataclass(frozen=True, slots=True)
class EmailDetector:
    name: str = "email"
    label: str = "EMAIL"
    level: Classification = Classification.INTERNAL

    def find(self, text: str) -> Iterator[Span]:
        if "@" not in text:  # most text; spares the pattern's walk over CJK runs
            return
        for match in _CANDIDATE.finditer(text):
            # An apostrophe may sit inside a local part (o'brien@) but one before it is
            # a quotation mark ('jane@example.com'); so are trailing dots and hyphens.
            local = match.group("local").lstrip("'")
            domain = match.group("domain").rstrip(".-")
            if local and _valid_local(local) and _valid_domain(domain):
                yield match.end("local") - len(local), match.start("domain") + len(domain)
