"""What a detector is: a name, a placeholder label, a default level, and ``find``.

A detector yields the spans it is sure of, already validated (a checksum, a format
rule, a decoded header); the scanner adds levels and resolves overlaps. Detectors are
pure and stateless, so one instance serves every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from appliance.egress.levels import Classification

__all__ = ["Detector", "RegexDetector", "Span"]

Span = tuple[int, int]
"""``(start, end)`` offsets into the scanned string, ``text[start:end]`` is the match."""


class Detector(Protocol):
    """One kind of sensitive content."""

    @property
    def name(self) -> str:
        """Stable identifier used in configuration and audit counts (``"iban"``)."""
        ...

    @property
    def label(self) -> str:
        """Upper-case kind put into placeholders (``"IBAN"`` -> ``⟦IBAN_1⟧``)."""
        ...

    @property
    def level(self) -> Classification:
        """Default classification of a finding; configuration may override it."""
        ...

    def find(self, text: str) -> Iterator[Span]:
        """Validated spans in ``text``, in any order, possibly overlapping."""
        ...


@dataclass(frozen=True, slots=True)
class RegexDetector:
    """A candidate pattern plus a validator over the matched text.

    The pattern must be linear-time on any input: bounded or possessive repetition,
    no nested unbounded quantifiers.
    """

    name: str
    label: str
    level: Classification
    pattern: re.Pattern[str]
    validate: Callable[[str], bool] | None = None

    def find(self, text: str) -> Iterator[Span]:
        for match in self.pattern.finditer(text):
            if self.validate is None or self.validate(match.group()):
                yield match.span()
