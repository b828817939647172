"""The ordered sensitivity levels a scan assigns: public < internal < confidential < restricted.

A finding contributes its detector's level; a text is classified at the highest level
among its findings (public when nothing is found: the scan can only raise a level).
"""

from __future__ import annotations

import enum

__all__ = ["Classification"]


class Classification(enum.IntEnum):
    """How far a piece of text may travel, lowest first (an ``IntEnum``, so it orders)."""

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    RESTRICTED = 3

    @property
    def label(self) -> str:
        """The lower-case name used in configuration and audit metadata."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | Classification) -> Classification:
        """``"confidential"`` (any case) or a member -> the member; ``ValueError`` otherwise."""
        if isinstance(value, Classification):
            return value
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(member.label for member in cls)
            message = f"unknown classification {value!r} (expected one of {names})"
            raise ValueError(message) from None
