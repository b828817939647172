"""E-mail address detector: a dot-atom local part (RFC 5322 §3.4.1, unquoted) of at
most 64 characters, ``@``, and a DNS domain of at least two labels whose last label (the
TLD) is alphabetic or an IDNA ``xn--`` label.

Found by a possessive pattern and checked in Python, so the work is linear in the text.
A trailing dot or hyphen (end of a sentence) and a leading apostrophe (a quotation
mark) are left out of the span.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.egress.detectors.base import Span
from appliance.egress.levels import Classification

__all__ = ["EmailDetector", "is_valid_email"]

_CANDIDATE = re.compile(
    r"(?<![\w.%+'-])(?P<local>[\w.%+'-]{1,64}+)@(?P<domain>[A-Za-z0-9.-]{1,253}+)(?![\w@])"
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
        for match in _CANDIDATE.finditer(text):
            # An apostrophe may sit inside a local part (o'brien@) but one before it is
            # a quotation mark ('jane@example.com'); so are trailing dots and hyphens.
            local = match.group("local").lstrip("'")
            domain = match.group("domain").rstrip(".-")
            if local and _valid_local(local) and _valid_domain(domain):
                yield match.end("local") - len(local), match.start("domain") + len(domain)
