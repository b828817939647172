"""The placeholder token that stands in for a finding, and the map back to originals.

Format: ``⟦EMAIL_1⟧`` = U+27E6 MATHEMATICAL LEFT WHITE SQUARE BRACKET, an upper-case
label, ``_``, a number from 1, U+27E7. Why this token and not ``<EMAIL_1>``,
``[EMAIL_1]`` or ``{{EMAIL_1}}``:

- it is no markup in Markdown, HTML, XML, JSON, shell or template languages, so neither
  the model nor a renderer treats it as a tag to close or strip (``<EMAIL_1>`` invites
  ``</EMAIL_1>`` and HTML escaping), a link (``[EMAIL_1]``) or a variable to fill in;
- it practically never occurs in real prompts, so re-identification does not rewrite
  the user's own text; literal placeholders already in a prompt are never reissued;
- the readable label (``EMAIL``, ``IBAN``) tells the model what kind of thing stands
  there, so it keeps grammar and copies the token verbatim rather than inventing one;
- the brackets are single code points that never appear inside a token, which makes
  the streaming re-identifier simple and exact (it holds back only from the last ``⟦``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["CLOSE", "OPEN", "TOKEN", "PlaceholderMap", "placeholder"]

OPEN = "\u27e6"
CLOSE = "\u27e7"
TOKEN = re.compile(OPEN + r"[A-Z0-9_]{1,64}" + CLOSE)
"""Anything of a placeholder's shape; only tokens in a :class:`PlaceholderMap` are
replaced on the way back."""


def placeholder(label: str, number: int) -> str:
    return f"{OPEN}{label}_{number}{CLOSE}"


@dataclass(frozen=True, slots=True)
class PlaceholderMap(Mapping[str, str]):
    """Placeholder -> original text, for one request. It holds the sensitive values:
    keep it in memory for the request's lifetime, never log it (``repr`` shows only the
    count)."""

    originals: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "originals", MappingProxyType(dict(self.originals)))

    def __getitem__(self, token: str) -> str:
        return self.originals[token]

    def __iter__(self) -> Iterator[str]:
        return iter(self.originals)

    def __len__(self) -> int:
        return len(self.originals)

    def __repr__(self) -> str:
        return f"PlaceholderMap(<{len(self.originals)} placeholders>)"
