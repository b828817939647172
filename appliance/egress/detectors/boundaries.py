"""Boundaries shared by the number detectors, so a match never starts or ends inside a
longer number or word (``12.4111...``, ``4111...abc``, ``ref-111222333``)."""

from __future__ import annotations

__all__ = ["NUMBER_END", "NUMBER_START"]

NUMBER_START = r"(?<!\w)(?<!\d[.,/-])"
"""Not preceded by a word character, nor by a digit and a separator."""

NUMBER_END = r"(?!\w)(?![.,/-]\d)"
"""Not followed by a word character, nor by a separator and a digit."""
